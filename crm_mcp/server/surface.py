"""What the model sees of a tool, shaped in one place: its schemas and its argument errors.

Every agent pays for `tools/list` in context on every session, so the schemas pydantic generates
are slimmed once, at registration (`slim_input_schema`, `slim_output_schema`): no generated
titles, no `anyOf`-with-null wrappers on inputs (optional means "may be omitted"), definitions
inlined instead of referenced, every value typed. And every argument mistake is answered with one
sentence the model can act on (`unknown_arguments`, `invalid_arguments`), never pydantic's own
text with its links.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

# What a value of "any JSON" is, spelled so that every schema value has a type.
ANY_JSON_TYPES = ["string", "number", "boolean", "object", "array", "null"]
_NULL = {"type": "null"}
_MAX_PROBLEMS = 5


# -- schemas ----------------------------------------------------------------------------------


def slim_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema a model needs: closed (unknown arguments are refused), optional arguments
    without null unions (omit them instead), no generated titles, definitions inlined."""
    out = _slim_with_defs(schema, output=False)
    out["type"] = "object"
    out.setdefault("properties", {})
    out["additionalProperties"] = False
    return out


def slim_output_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The output schema of what the model reads: each top-level field typed and described
    (nullable ones as a type list); an object nested in a field is said in words, as its field
    names ("Each: id, body (CRM data), truncated, date_added."), which tells a model what it will
    read at a quarter of the size. Titles, defaults and model docstrings are dropped."""
    if schema is None:
        return None
    out = _slim(schema, schema.get("$defs", {}), output=True)
    out.pop("description", None)  # the tool's description says what it returns
    for name, field in out.get("properties", {}).items():
        out["properties"][name] = _summarize_nested(field)
    return out


def _summarize_nested(field: dict[str, Any]) -> dict[str, Any]:
    """A top-level output field whose value holds objects: keep its type, say the objects' fields."""
    target, key = (field, "properties")
    if "properties" not in field and isinstance(field.get("items"), dict) and "properties" in field["items"]:
        target = field["items"]
    if key not in target:
        return field
    words = ("Each: " if target is not field else "Fields: ") + _field_list(target) + "."
    slim = {k: v for k, v in target.items() if k not in ("properties", "description")}
    if target is field:
        out = slim
    elif slim == {"type": "object"}:  # "Each: ..." says they are objects
        out = {k: v for k, v in field.items() if k != "items"}
    else:
        out = {**field, "items": slim}
    out["description"] = f"{field['description']} {words}" if field.get("description") else words
    return out


def _field_list(schema: dict[str, Any]) -> str:
    """Field names, with the fields of nested objects and a "CRM data" mark where the text comes
    from the CRM (data, never instructions); the rest of a nested description stays in the code."""
    parts = []
    for name, sub in schema.get("properties", {}).items():
        inner = (
            sub if "properties" in sub else sub.get("items") if isinstance(sub.get("items"), dict) else None
        )
        detail = ["CRM data"] if _is_crm_data(sub.get("description", "")) else []
        if inner and "properties" in inner:
            detail.append(_field_list(inner))
        parts.append(f"{name} ({'; '.join(detail)})" if detail else name)
    return ", ".join(parts)


def _is_crm_data(description: str) -> bool:
    text = description.lower()
    return text.startswith("crm data") or "not instructions" in text or "never instructions" in text


def _slim_with_defs(schema: dict[str, Any], *, output: bool) -> dict[str, Any]:
    """Inline the definitions used once; keep (slimmed) those used several times, said once."""
    defs: dict[str, Any] = schema.get("$defs", {})
    text = json.dumps(schema)
    shared = {name for name in defs if text.count(f'"#/$defs/{name}"') > 1}
    out = _slim(schema, defs, output=output, shared=shared)
    kept = {name: _slim(defs[name], defs, output=output, shared=shared, seen=(name,)) for name in shared}
    for body in kept.values():
        body.pop("description", None)
    if kept:
        out["$defs"] = kept
    return out


def _slim(
    node: Any,
    defs: Mapping[str, Any],
    *,
    output: bool,
    shared: set[str] = frozenset(),  # type: ignore[assignment]
    seen: tuple[str, ...] = (),
) -> Any:
    if isinstance(node, list):
        return [_slim(item, defs, output=output, shared=shared, seen=seen) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    node.pop("$defs", None)
    ref = node.pop("$ref", None)
    if isinstance(ref, str) and ref.removeprefix("#/$defs/") in shared:
        node = {"$ref": ref, **{k: v for k, v in node.items() if k == "description"}}
        return node
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen:  # recursive model: cut it off as an untyped object
            return {"type": "object", **{k: v for k, v in node.items() if k == "description"}}
        target = dict(defs[name])
        target.pop("description", None)  # a model's docstring; the field's own description wins
        node = {**target, **node}
        seen = (*seen, name)
    node.pop("title", None)
    if output:
        node.pop("required", None)  # every field is always there; null where the schema says so
    if output or node.get("default", 0) is None:
        node.pop("default", None)
    if output and node.get("additionalProperties") is True:
        node.pop("additionalProperties")
    for key in ("anyOf", "oneOf"):
        if key in node:
            node = _merge_nullable(node, key, defs, output=output, shared=shared, seen=seen)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {
                name: _slim(sub, defs, output=output, shared=shared, seen=seen) for name, sub in value.items()
            }
        elif key == "propertyNames":  # keys are strings, whatever else constrains them
            out[key] = {**_slim(value, defs, output=output, shared=shared, seen=seen), "type": "string"}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            out[key] = _slim(value, defs, output=output, shared=shared, seen=seen)
        else:
            out[key] = value
    if not ({"type", "anyOf", "oneOf", "allOf", "enum", "const"} & out.keys()):
        out["type"] = list(ANY_JSON_TYPES)  # `Any`: still say what it may be
    return out


def _merge_nullable(
    node: dict[str, Any],
    key: str,
    defs: Mapping[str, Any],
    *,
    output: bool,
    shared: set[str],
    seen: tuple[str, ...],
) -> dict[str, Any]:
    """`anyOf: [X, null]` becomes X (inputs: omit it instead) or X with `null` in its type (outputs)."""
    branches = node[key]
    rest = [b for b in branches if b != _NULL]
    if len(rest) == len(branches):
        return node
    node = {k: v for k, v in node.items() if k != key}
    if len(rest) > 1:
        return {**node, key: [*rest, _NULL] if output else rest}
    only = _slim(rest[0], defs, output=output, shared=shared, seen=seen)
    merged = {**only, **node}
    if output:
        merged = _nullable(merged)
    return merged


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    elif kind is None:
        return {"anyOf": [schema, _NULL]}
    return schema


# -- argument errors --------------------------------------------------------------------------


def unknown_arguments(tool: str, given: Iterable[str], valid: Iterable[str]) -> str | None:
    """One sentence refusing arguments the tool does not take, with the closest valid names;
    None when every argument is known."""
    names = list(valid)
    unknown = [g for g in given if g not in names]
    if not unknown:
        return None
    close = {name: difflib.get_close_matches(name, names, n=1, cutoff=0.6) for name in unknown}
    if len(unknown) == 1:
        [(name, match)] = close.items()
        head = f"Unknown argument `{name}` for {tool}" + (f"; did you mean `{match[0]}`?" if match else ".")
    else:
        parts = [f"`{n}`" + (f" (did you mean `{m[0]}`?)" if m else "") for n, m in close.items()]
        head = f"Unknown arguments for {tool}: {', '.join(parts)}."
    valid_list = ", ".join(names) or "none (call it with no arguments)"
    return f"{head} Valid: {valid_list}. Nothing was done; call again with only these names."


def invalid_arguments(
    tool: str, exc: ValidationError, arguments: Mapping[str, Any], schema: Mapping[str, Any]
) -> str:
    """pydantic's argument errors as one sentence naming each argument, what it must be, and an
    example where the schema has one."""
    problems: dict[str, list[Any]] = {}
    for err in exc.errors(include_url=False):
        problems.setdefault(_real_path(err["loc"], arguments), []).append(err)
    props = schema.get("properties", {})
    phrases = []
    for path, errs in list(problems.items())[:_MAX_PROBLEMS]:
        if len(errs) == 1:
            phrase = f"`{path}` {_phrase(errs[0])}"
        else:  # a union: every accepted shape failed
            kinds = list(dict.fromkeys(_expected(e) for e in errs))
            phrase = f"`{path}` must be one of: {', '.join(kinds)}"
        example = (props.get(path) or {}).get("examples")
        if errs[0]["type"] != "missing" and (example or errs[0]["type"].startswith("datetime")):
            phrase += f", e.g. {_short(example[0]) if example else '2030-01-15T15:00:00-05:00'}"
        phrases.append(phrase)
    more = len(problems) - len(phrases)
    tail = f"; and {more} more" if more > 0 else ""
    noun = "argument" if len(problems) == 1 else "arguments"
    return f"Invalid {noun} for {tool}: {'; '.join(phrases)}{tail}. Nothing was done; fix and call again."


def _real_path(loc: tuple[int | str, ...], arguments: Mapping[str, Any]) -> str:
    """The argument path of an error, without pydantic's union-member tags (`constrained-str`)."""
    if not loc:
        return "arguments"
    path, value = str(loc[0]), arguments.get(str(loc[0]))
    for part in loc[1:]:
        if part == "[key]":
            path += " (key)"
            break
        if isinstance(value, Mapping) and part in value:
            path, value = f"{path}.{part}", value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            path, value = f"{path}[{part}]", value[part]
    return path


_EXPECTED = {
    "string": "text",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "an object",
    "datetime": "an ISO-8601 date-time",
    "date": "a date (YYYY-MM-DD)",
    "literal": "one of the listed values",
}


def _expected(err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("string_too_long", "too_long"):
        what = "text" if kind == "string_too_long" else "a list"
        unit = "characters" if kind == "string_too_long" else "items"
        return f"{what} of at most {ctx.get('max_length')} {unit}"
    for prefix, noun in _EXPECTED.items():
        if kind.startswith(prefix):
            return noun
    return "a valid value"


def _phrase(err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    bound = {
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
        "string_too_short": "must not be empty"
        if ctx.get("min_length") == 1
        else f"must be at least {ctx.get('min_length')} characters",
        "too_long": f"may have at most {ctx.get('max_length')} items",
        "too_short": f"needs at least {ctx.get('min_length')} items",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "greater_than": f"must be greater than {ctx.get('gt')}",
        "missing": "is required",
        "string_pattern_mismatch": "has the wrong format",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "enum": f"must be one of {ctx.get('expected')}",
        "finite_number": "must be a finite number",
    }
    if kind in bound:
        return bound[kind]
    if kind == "value_error":
        return "is not valid: " + str(err["msg"]).removeprefix("Value error, ")
    got = f" (got {_short(err.get('input'))})" if "input" in err else ""
    return f"must be {_expected(err)}{got}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

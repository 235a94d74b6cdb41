"""CRM search (``POST /crm/v3/objects/{type}/search``) as pure functions over stored records.

What a client must cope with is reproduced: filter groups are ORed and filters inside one ANDed;
at most 6 groups (spec) and 18 filters (HubSpot docs); ``limit`` at most 200 (spec); ``after`` is an
offset and paging stops at 10,000 results — asking past it is a 400 even though ``total`` counts
every match, so a client that pages blindly fails at record 10,001 exactly as it would live.
Dates compare as epoch milliseconds whether given as ms or ISO 8601.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crm_mcp.providers.hubspot.sandbox.errors import validation
from crm_mcp.providers.hubspot.sandbox.object_types import ObjectType
from crm_mcp.providers.hubspot.sandbox.store import Record
from crm_mcp.providers.hubspot.sandbox.values import to_epoch_ms

MAX_GROUPS = 6
MAX_FILTERS = 18
MAX_LIMIT = 200
RESULT_CEILING = 10_000
_TOKEN_SPLIT = re.compile(r"[\s@.,;:_\-/()+]+")


@dataclass(frozen=True)
class SearchPage:
    rows: list[Record]
    total: int
    next_after: str | None
    properties: list[str] | None


def _typed(otype: ObjectType, name: str, value: str | None) -> Any:
    """A comparable form of a value: ms for dates, float for numbers, lowercase text otherwise."""
    if value is None:
        return None
    kind = otype.schema[name]["type"] if name in otype.schema else "string"
    if kind in ("date", "datetime"):
        return to_epoch_ms(value)
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return None
    return value.lower()


def _tokens_match(actual: str, wanted: str) -> bool:
    text, pattern = actual.lower(), wanted.lower()
    tokens = [t for t in _TOKEN_SPLIT.split(text) if t]
    if "*" in pattern:
        return fnmatch.fnmatchcase(text, pattern) or any(fnmatch.fnmatchcase(t, pattern) for t in tokens)
    return pattern == text or pattern in tokens


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
}


def _filter_matches(otype: ObjectType, record: Record, flt: dict[str, Any]) -> bool:
    name, op = flt["propertyName"], flt["operator"]
    raw: str | None = record["props"].get(name)
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return (raw is not None) == (op == "HAS_PROPERTY")
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        hit = raw is not None and _tokens_match(raw, str(flt.get("value", "")))
        return hit == (op == "CONTAINS_TOKEN")
    actual = _typed(otype, name, raw)
    if op in ("IN", "NOT_IN"):
        hit = actual is not None and actual in [_typed(otype, name, str(v)) for v in flt.get("values") or []]
        return hit == (op == "IN")
    wanted = _typed(otype, name, str(flt.get("value", "")))
    if op in ("EQ", "NEQ"):
        return (actual is not None and actual == wanted) == (op == "EQ")
    if actual is None or wanted is None:
        return False
    if op == "BETWEEN":
        high = _typed(otype, name, str(flt.get("highValue", "")))
        return high is not None and wanted <= actual <= high
    return _COMPARE[op](actual, wanted)


_OPERATORS = {"EQ", "NEQ", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY", "BETWEEN"}
_OPERATORS |= {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN", *_COMPARE}


def _check_groups(otype: ObjectType, groups: Any) -> list[list[dict[str, Any]]]:
    if not isinstance(groups, list):
        raise validation("filterGroups must be an array")
    if len(groups) > MAX_GROUPS:
        raise validation(f"Too many filter groups: {len(groups)} (the maximum is {MAX_GROUPS})")
    out: list[list[dict[str, Any]]] = []
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise validation("each filter group needs a filters array")
        for flt in filters:
            if not isinstance(flt, dict) or flt.get("operator") not in _OPERATORS:
                raise validation(f"Invalid filter operator in {flt!r}")
            if flt.get("propertyName") not in otype.schema:
                raise validation(f"Property {flt.get('propertyName')!r} does not exist on {otype.name}")
        out.append(filters)
    if sum(len(f) for f in out) > MAX_FILTERS:
        raise validation(f"Too many filters: at most {MAX_FILTERS} across all filter groups")
    return out


def _paging(body: dict[str, Any]) -> tuple[int, int]:
    limit, after = body.get("limit", 10), body.get("after", "0") or "0"
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_LIMIT:
        raise validation(f"limit must be between 0 and {MAX_LIMIT}")
    if not str(after).isdigit():
        raise validation(f"after must be a numeric cursor, got {after!r}")
    offset = int(after)
    if offset + limit > RESULT_CEILING:
        raise validation(
            f"Search results are limited to {RESULT_CEILING} per query; after ({offset}) + limit "
            f"({limit}) goes past it. Narrow the query (for example on hs_object_id or lastmodifieddate)."
        )
    return offset, limit


def _sort_rules(otype: ObjectType, sorts: Any) -> list[tuple[str, bool]]:
    """``["-createdate"]`` or ``[{"propertyName", "direction"}]`` -> [(name, descending)]."""
    rules: list[tuple[str, bool]] = []
    for rule in sorts or []:
        if isinstance(rule, str):
            name, desc = rule.lstrip("-"), rule.startswith("-")
        elif isinstance(rule, dict):
            name, desc = str(rule.get("propertyName", "")), rule.get("direction") == "DESCENDING"
        else:
            raise validation(f"Invalid sort {rule!r}")
        if name not in otype.schema:
            raise validation(f"Cannot sort on {name!r}: no such property")
        rules.append((name, desc))
    return rules or [("hs_object_id", False)]


def _sorted(otype: ObjectType, rows: list[Record], rules: list[tuple[str, bool]]) -> list[Record]:
    if rules == [("hs_object_id", False)]:
        return rows  # stored rows are already in id order
    for name, desc in reversed(rules):
        present = [r for r in rows if _typed(otype, name, r["props"].get(name)) is not None]
        missing = [r for r in rows if _typed(otype, name, r["props"].get(name)) is None]

        def key(r: Record, n: str = name) -> Any:
            return _typed(otype, n, r["props"].get(n))

        rows = sorted(present, key=key, reverse=desc) + missing  # records without a value sort last
    return rows


def _query_matches(otype: ObjectType, record: Record, words: list[str]) -> bool:
    hay = " ".join(str(record["props"].get(p) or "") for p in otype.query_props).lower()
    return all(w in hay for w in words)


def search(otype: ObjectType, records: list[Record], body: Any) -> SearchPage:
    """One page of matches for a ``PublicObjectSearchRequest``.

    Raises:
        ApiError: 400 VALIDATION_ERROR for a malformed request or one past the 10,000 ceiling.
    """
    if not isinstance(body, dict):
        raise validation("Invalid input JSON: expected a PublicObjectSearchRequest object")
    groups = _check_groups(otype, body.get("filterGroups") or [])
    offset, limit = _paging(body)
    query = body.get("query") or ""
    if not isinstance(query, str) or len(query) > 3000:
        raise validation("query must be a string of at most 3000 characters")
    words = query.lower().split()
    rows = [
        r
        for r in records
        if (not groups or any(all(_filter_matches(otype, r, f) for f in g) for g in groups))
        and _query_matches(otype, r, words)
    ]
    rows = _sorted(otype, rows, _sort_rules(otype, body.get("sorts")))
    end = offset + limit
    props = body.get("properties")
    return SearchPage(
        rows=rows[offset:end],
        total=len(rows),
        next_after=str(end) if end < len(rows) else None,
        properties=[str(p) for p in props] if isinstance(props, list) else None,
    )

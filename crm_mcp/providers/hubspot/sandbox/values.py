"""Property values on the wire: what HubSpot accepts in a write and how it stores and returns it.

All values travel as strings (the spec's ``additionalProperties: string``); the simulator refuses
anything else so a client that sends a number or ``null`` finds out here, not in production. A
name the schema does not have, a read-only property, an option that is not offered, an email that
is not one, a date that is not midnight UTC — each is one entry of HubSpot's "Property values were
not valid" 400. An empty string clears a property.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from crm_mcp.providers.hubspot.sandbox.errors import PropertyErrors, property_problem, validation
from crm_mcp.providers.hubspot.sandbox.object_types import ObjectType

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DAY_MS = 86_400_000


def iso_ms(epoch_s: float) -> str:
    """HubSpot's timestamp form: ``2024-03-01T12:00:00.000Z``."""
    dt = datetime.fromtimestamp(epoch_s, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def to_epoch_ms(value: str) -> int | None:
    """Epoch milliseconds, ISO 8601 (``Z`` or offset) or ``YYYY-MM-DD``; None when none of these."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
            return (
                int(datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC).timestamp()) * 1000
            )
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _normalise(name: str, spec: dict[str, Any], value: str) -> tuple[str | None, dict[str, Any] | None]:
    """(stored value, problem) for one non-empty value of a known, writable property."""
    kind = spec["type"]
    if name == "email":
        if not _EMAIL.fullmatch(value.strip()):
            return None, property_problem(name, "INVALID_EMAIL", f"Email address {value} is invalid")
        return value.strip().lower(), None
    if kind == "enumeration":
        return _check_options(name, spec, value)
    if kind == "number":
        try:
            float(value)
        except ValueError:
            return None, property_problem(name, "INVALID_DOUBLE", f"{value} is not a valid number")
        return value.strip(), None
    if kind == "bool":
        if value.lower() not in ("true", "false"):
            return None, property_problem(name, "INVALID_BOOLEAN", f"{value} is not a valid boolean")
        return value.lower(), None
    if kind in ("date", "datetime"):
        return _check_time(name, kind, value)
    return value, None


def _check_options(name: str, spec: dict[str, Any], value: str) -> tuple[str | None, dict[str, Any] | None]:
    allowed = [o["value"] for o in spec["options"]]
    if spec.get("externalOptions") or not allowed:
        return value, None
    chosen = value.split(";") if spec["fieldType"] == "checkbox" else [value]
    bad = [c for c in chosen if c not in allowed]
    if bad:
        listing = ", ".join(allowed)
        msg = f"{bad[0]} was not one of the allowed options: [{listing}]"
        return None, property_problem(name, "INVALID_OPTION", msg)
    return value, None


def _check_time(name: str, kind: str, value: str) -> tuple[str | None, dict[str, Any] | None]:
    ms = to_epoch_ms(value)
    if ms is None:
        msg = f"{value} is not a valid {kind}: use epoch milliseconds or ISO 8601"
        return None, property_problem(name, "INVALID_DATE", msg)
    if kind == "date":
        if ms % _DAY_MS:
            moment = iso_ms(ms / 1000)[11:23]
            msg = f"{value} is at {moment} UTC, not midnight!"
            return None, property_problem(name, "INVALID_DATE", msg)
        return iso_ms(ms / 1000)[:10], None
    return iso_ms(ms / 1000), None


def _check_one(otype: ObjectType, name: Any, value: Any) -> tuple[str | None, dict[str, Any] | None]:
    spec = otype.schema.get(name)
    if spec is None:
        return None, property_problem(str(name), "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
    if not isinstance(value, str):
        got = "null" if value is None else type(value).__name__
        msg = f'Property "{name}" must be a string, got {got}'
        return None, property_problem(name, "INVALID_PROPERTY_VALUE_TYPE", msg)
    if spec["modificationMetadata"]["readOnlyValue"]:
        msg = f'"{name}" is a read only property; its value cannot be set.'
        return None, property_problem(name, "READ_ONLY_VALUE", msg)
    if value == "":
        return None, None
    return _normalise(name, spec, value)


def validate_properties(otype: ObjectType, raw: Any, *, creating: bool) -> dict[str, str | None]:
    """Normalised ``{name: value}`` (None = clear) for a write, or ``PropertyErrors`` listing all.

    Raises:
        ApiError: 400 when ``properties`` is not an object; ``PropertyErrors`` (400) otherwise.
    """
    if raw is None and not creating:
        raw = {}
    if not isinstance(raw, dict):
        raise validation('Invalid input JSON: "properties" must be an object of string values')
    out: dict[str, str | None] = {}
    problems: list[dict[str, Any]] = []
    for name, value in raw.items():
        stored, problem = _check_one(otype, name, value)
        if problem:
            problems.append(problem)
        else:
            out[name] = stored
    if creating:
        for name in otype.required:
            if out.get(name) is None and not any(p["name"] == name for p in problems):
                problems.append(property_problem(name, "REQUIRED", f"{name} is required"))
    if problems:
        raise PropertyErrors(problems)
    return out

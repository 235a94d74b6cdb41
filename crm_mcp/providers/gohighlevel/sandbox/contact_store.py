"""Contact rules of the GoHighLevel simulator: fields, custom fields, duplicates and search.

These are the behaviours a connector depends on and cannot see in the spec alone — phone
normalisation, the location's duplicate check (email first, then phone), upsert matching, custom
fields written as ``{id|key, field_value}`` but read as ``{id, value}`` — written as plain functions
over the stored dicts (no HTTP here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from crm_mcp.providers.gohighlevel.sandbox.schemas import unprocessable
from crm_mcp.providers.gohighlevel.sandbox.store import iso_z


def parse_birth_date(value: Any) -> str | None:
    """The spec lists eight accepted layouts; GHL answers with midnight UTC in ``iso_z`` form."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        for fmt in ("%Y-%m-%d", "%m-%d-%Y"):
            for sep in "-/._":
                try:
                    d = datetime.strptime(value, fmt.replace("-", sep)).replace(tzinfo=UTC)
                except ValueError:
                    continue
                return iso_z(d)
    raise unprocessable(["dateOfBirth must be a valid date (YYYY-MM-DD, MM/DD/YYYY, ...)"])


def normalize_phone(phone: str | None) -> str | None:
    """E.164-ish: keep digits, assume +1 for ten-digit numbers (GHL's default country here)."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", phone)
    if not digits:
        raise unprocessable(["phone must be a valid phone number"])
    if len(digits) == 10 and not phone.strip().startswith("+"):
        digits = "1" + digits
    return "+" + digits


# --------------------------------------------------------------------------- custom fields
def resolve_custom_fields(
    items: list[Any], fields: list[dict[str, Any]], current: dict[str, Any]
) -> dict[str, Any]:
    """Apply write-shape items ``{id|key, field_value}`` to ``current`` ({field id: value})."""
    by_id = {f["id"]: f for f in fields if f["model"] == "contact"}
    by_key = {f["fieldKey"]: f for f in by_id.values()}
    out = dict(current)
    errors: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(f"customFields.{i} must be an object")
            continue
        unknown = set(item) - {"id", "key", "field_value", "value"}
        errors += [f"customFields.{i}.property {k} should not exist" for k in sorted(unknown)]
        key = item.get("key")
        field = by_id.get(item.get("id") or "") or (
            by_key.get(key if "." in str(key) else f"contact.{key}") if key else None
        )
        if field is None:
            errors.append(f"customFields.{i} custom field {item.get('id') or key!r} not found")
            continue
        value = item.get("field_value", item.get("value"))
        if value in (None, "", []):
            out.pop(field["id"], None)
            continue
        kind = field["dataType"]
        if kind in ("NUMERICAL", "MONETORY"):
            try:
                value = float(value) if not isinstance(value, bool) else None
            except (TypeError, ValueError):
                value = None
            if value is None:
                errors.append(f"customFields.{i} {field['name']} must be a number")
                continue
            value = int(value) if value.is_integer() else value
        elif kind == "SINGLE_OPTIONS" and value not in field["picklistOptions"]:
            errors.append(f"customFields.{i} {value!r} is not an option of {field['name']}")
            continue
        elif kind == "DATE" and not _is_date(value):
            errors.append(f"customFields.{i} {field['name']} must be a date")
            continue
        out[field["id"]] = value
    if errors:
        raise unprocessable(errors)
    return out


def _is_date(value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- contacts
CONTACT_SCALARS = (
    "firstName",
    "lastName",
    "name",
    "email",
    "phone",
    "address1",
    "city",
    "state",
    "postalCode",
    "website",
    "timezone",
    "dnd",
    "dndSettings",
    "inboundDndSettings",
    "source",
    "country",
    "assignedTo",
    "companyName",
    "gender",
    "dateOfBirth",
)


def apply_contact_fields(contact: dict[str, Any], body: dict[str, Any], fields: list[dict[str, Any]]) -> None:
    """Merge a (validated) write body into a stored contact. Tags are handled by the caller."""
    for key in CONTACT_SCALARS:
        if key not in body:
            continue
        value = body[key]
        if key == "phone":
            value = normalize_phone(value)
        elif key == "dateOfBirth":
            value = parse_birth_date(value)
        elif key == "email" and value is not None:
            value = value.strip()
            if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
                raise unprocessable(["email must be an email"])
        contact[key] = value
    if "customFields" in body:
        contact["_custom"] = resolve_custom_fields(body["customFields"], fields, contact.get("_custom", {}))


def render_contact(c: dict[str, Any]) -> dict[str, Any]:
    """Read shape: custom fields as ``[{id, value}]``, lowercase helpers, ISO ``Z`` dates."""
    first, last = c.get("firstName") or "", c.get("lastName") or ""
    full = c.get("name") or " ".join(p for p in (first, last) if p)
    out: dict[str, Any] = {"id": c["id"], "locationId": c["locationId"]}
    for key in CONTACT_SCALARS:
        if c.get(key) is not None:
            out[key] = c[key]
    helpers = {
        "contactName": full,
        "firstNameLowerCase": first.lower(),
        "lastNameLowerCase": last.lower(),
        "fullNameLowerCase": full.lower(),
        "emailLowerCase": (c.get("email") or "").lower(),
    }
    out.update({k: v for k, v in helpers.items() if v})
    out.update(
        dnd=bool(c.get("dnd")),
        type="lead",
        tags=list(c.get("tags", [])),
        customFields=[{"id": k, "value": v} for k, v in c.get("_custom", {}).items()],
        dateAdded=c["dateAdded"],
        dateUpdated=c["dateUpdated"],
    )
    return out


def merge_tags(existing: list[str], new: Iterable[str]) -> list[str]:
    out = list(existing)
    for tag in new:
        tag = tag.strip().lower()  # GHL stores tags lowercased
        if tag and tag not in out:
            out.append(tag)
    return out


def find_duplicate(
    contacts: Iterable[dict[str, Any]], email: str | None, phone: str | None
) -> tuple[dict[str, Any], str] | None:
    """Email first (case-insensitive), then phone — the location's duplicate-check priority."""
    pool = list(contacts)
    if email:
        for c in pool:
            if (c.get("email") or "").lower() == email.strip().lower():
                return c, "email"
    if phone:
        norm = normalize_phone(phone)
        for c in pool:
            if c.get("phone") and c.get("phone") == norm:
                return c, "phone"
    return None


# --------------------------------------------------------------------------- contact search
def _filter_match(wire: dict[str, Any], flt: dict[str, Any]) -> bool:
    if "filters" in flt:
        results = [_filter_match(wire, f) for f in flt.get("filters", [])]
        return any(results) if str(flt.get("group", "AND")).upper() == "OR" else all(results)
    field, op, value = flt.get("field"), flt.get("operator", "eq"), flt.get("value")
    if not isinstance(field, str):
        raise unprocessable(["filters.field must be a string"])
    actual: Any = wire.get(field)
    if field.startswith("customFields."):
        cf = field.split(".", 1)[1]
        actual = next((f["value"] for f in wire["customFields"] if f["id"] == cf), None)

    def text(x: Any) -> str:
        return str(x).lower()

    if op in ("eq", "not_eq"):
        hit = (value in actual) if isinstance(actual, list) else text(actual) == text(value)
        return hit if op == "eq" else not hit
    if op in ("contains", "not_contains"):
        items = actual if isinstance(actual, list) else [actual]
        hit = any(text(value) in text(a) for a in items if a is not None)
        return hit if op == "contains" else not hit
    if op in ("exists", "not_exists"):
        present = actual not in (None, "", [])
        return present if op == "exists" else not present
    if op == "range" and isinstance(value, dict):
        checks = {
            "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "lte": lambda a, b: a <= b,
        }
        return actual is not None and all(checks[k](actual, v) for k, v in value.items() if k in checks)
    raise unprocessable([f"filters.operator {op!r} is not supported"])


def search_contacts(contacts: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    page_limit = body.get("pageLimit", 20)
    page = body.get("page", 1)
    if not isinstance(page_limit, int) or not 1 <= page_limit <= 500:
        raise unprocessable(["pageLimit must not be greater than 500"])
    if not isinstance(page, int) or page < 1:
        raise unprocessable(["page must be a positive number"])
    query = (body.get("query") or "").lower()
    rows = [render_contact(c) for c in contacts]
    if query:
        hay = ("contactName", "email", "phone", "companyName", "firstName", "lastName")
        rows = [r for r in rows if any(query in str(r.get(k) or "").lower() for k in hay)]
    for flt in body.get("filters") or []:
        rows = [r for r in rows if _filter_match(r, flt)]
    for spec in reversed(body.get("sort") or [{"field": "dateAdded", "direction": "desc"}]):
        field: str = spec.get("field", "dateAdded")

        def sort_key(row: dict[str, Any], k: str = field) -> str:
            return str(row.get(k) or "")

        rows.sort(key=sort_key, reverse=spec.get("direction") == "desc")
    start = (page - 1) * page_limit
    return {"contacts": rows[start : start + page_limit], "total": len(rows)}

"""In-memory state and business rules of the GoHighLevel simulator (no HTTP here).

Kept apart from the routes so the rules a connector depends on — duplicate detection, upsert
matching, the custom-field write/read asymmetry, slot availability — read as plain functions over
dicts, and so the request schemas (hand-copied from the official OpenAPI files, cross-checked by a
test) sit in one place.
"""

from __future__ import annotations

import random
import re
import string
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

# --------------------------------------------------------------------------- request schemas
# Property name -> expected JSON type. Taken from the spec's request DTOs (contacts.json,
# calendars.json); GHL's validation layer refuses any other property with a 422.
S, B, A, OBJ, N, ANY = "string", "boolean", "array", "object", "number", "any"

_CONTACT_COMMON: dict[str, str] = {
    "firstName": S,
    "lastName": S,
    "name": S,
    "email": S,
    "phone": S,
    "address1": S,
    "city": S,
    "state": S,
    "postalCode": S,
    "website": S,
    "timezone": S,
    "dnd": B,
    "dndSettings": OBJ,
    "inboundDndSettings": OBJ,
    "tags": A,
    "customFields": A,
    "source": S,
    "dateOfBirth": ANY,
    "country": S,
    "assignedTo": S,
}
CREATE_CONTACT = {**_CONTACT_COMMON, "locationId": S, "gender": S, "companyName": S}
UPDATE_CONTACT = dict(_CONTACT_COMMON)
UPSERT_CONTACT = {**CREATE_CONTACT, "createNewIfDuplicateAllowed": B}
TAGS = {"tags": A}
NOTE = {"userId": S, "body": S, "title": S, "color": S, "pinned": B}
TASK = {"title": S, "body": S, "dueDate": S, "completed": B, "assignedTo": S}
TASK_STATUS = {"completed": B}
_APPOINTMENT_COMMON: dict[str, str] = {
    "title": S,
    "meetingLocationType": S,
    "meetingLocationId": S,
    "overrideLocationConfig": B,
    "appointmentStatus": S,
    "assignedUserId": S,
    "description": S,
    "address": S,
    "ignoreDateRange": B,
    "toNotify": B,
    "ignoreFreeSlotValidation": B,
    "rrule": S,
    "calendarId": S,
    "startTime": S,
    "endTime": S,
}
CREATE_APPOINTMENT = {**_APPOINTMENT_COMMON, "locationId": S, "contactId": S}
EDIT_APPOINTMENT = dict(_APPOINTMENT_COMMON)
DELETE_EVENT: dict[str, str] = {}
# The spec's SearchBodyV2DTO is empty (it links to external docs); these keys come from GHL's docs.
SEARCH_CONTACTS = {
    "locationId": S,
    "page": N,
    "pageLimit": N,
    "searchAfter": A,
    "filters": A,
    "sort": A,
    "query": S,
}


class RequestSchema:
    """Allowed properties (name -> JSON type) and required names of one request DTO."""

    def __init__(
        self, spec_file: str | None, properties: dict[str, str], required: Iterable[str] = ()
    ) -> None:
        self.spec_file = spec_file  # None: not defined by the spec (see SEARCH_CONTACTS)
        self.properties = properties
        self.required = frozenset(required)


# Keyed by the spec's component name so a test can compare each with the official file.
REQUEST_SCHEMAS: dict[str, RequestSchema] = {
    "CreateContactDto": RequestSchema("contacts.json", CREATE_CONTACT, {"locationId"}),
    "UpdateContactDto": RequestSchema("contacts.json", UPDATE_CONTACT),
    "UpsertContactDto": RequestSchema("contacts.json", UPSERT_CONTACT, {"locationId"}),
    "TagsDTO": RequestSchema("contacts.json", TAGS, {"tags"}),
    "NotesDTO": RequestSchema("contacts.json", NOTE, {"body"}),
    "UpdateNoteDTO": RequestSchema("contacts.json", NOTE),
    "CreateTaskParams": RequestSchema("contacts.json", TASK, {"title", "dueDate", "completed"}),
    "UpdateTaskBody": RequestSchema("contacts.json", TASK),
    "UpdateTaskStatusParams": RequestSchema("contacts.json", TASK_STATUS, {"completed"}),
    "AppointmentCreateSchema": RequestSchema(
        "calendars.json", CREATE_APPOINTMENT, {"calendarId", "locationId", "contactId", "startTime"}
    ),
    "AppointmentEditSchema": RequestSchema("calendars.json", EDIT_APPOINTMENT),
    "DeleteAppointmentSchema": RequestSchema("calendars.json", DELETE_EVENT),
    "SearchBodyV2DTO": RequestSchema(None, SEARCH_CONTACTS, {"locationId"}),
}
ENUMS = {
    "meetingLocationType": ["custom", "zoom", "gmeet", "phone", "address", "ms_teams", "google"],
    "appointmentStatus": ["new", "confirmed", "cancelled", "showed", "noshow", "invalid"],
}
_TYPE_MSG = {
    S: "must be a string",
    B: "must be a boolean value",
    A: "must be an array",
    OBJ: "must be an object",
    N: "must be a number conforming to the specified constraints",
}


class ApiError(Exception):
    """An error answer in GHL's (NestJS) shape."""

    def __init__(self, status: int, message: str | list[str], error: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"statusCode": status, "message": message}
        if error:
            self.body["error"] = error
        self.body.update(extra)


def unprocessable(messages: list[str]) -> ApiError:
    return ApiError(422, messages, "Unprocessable Entity")


def _type_ok(kind: str, value: Any) -> bool:
    if kind == ANY:
        return True
    if kind == S:
        return isinstance(value, str)
    if kind == B:
        return isinstance(value, bool)
    if kind == A:
        return isinstance(value, list)
    if kind == OBJ:
        return isinstance(value, dict)
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(body: Any, schema_name: str) -> dict[str, Any]:
    """class-validator style checks: whitelist (no unknown properties), required, types, enums."""
    schema = REQUEST_SCHEMAS[schema_name].properties
    need = REQUEST_SCHEMAS[schema_name].required
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object", "Bad Request")
    errors = [f"property {k} should not exist" for k in body if k not in schema]
    for name in sorted(need):
        if body.get(name) in (None, ""):
            errors.append(f"{name} should not be empty")
    for name, value in body.items():
        kind = schema.get(name)
        if kind is None or (value is None and name not in need):
            continue
        if not _type_ok(kind, value):
            errors.append(f"{name} {_TYPE_MSG[kind]}")
        elif name in ENUMS and value not in ENUMS[name]:
            errors.append(f"{name} must be one of the following values: {', '.join(ENUMS[name])}")
        elif name == "tags" and not all(isinstance(t, str) for t in value):
            errors.append("each value in tags must be a string")
    if errors:
        raise unprocessable(errors)
    return body


# --------------------------------------------------------------------------- ids and time
_ALPHABET = string.ascii_letters + string.digits


class IdFactory:
    """20-char base62 ids from a seeded RNG, so a seeded run produces the same ids every time."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def new(self) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(20))

    def trace_id(self) -> str:
        return "-".join(
            "".join(self._rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
        )


def iso_z(dt: datetime) -> str:
    """Contacts style: ``2021-07-02T05:18:26.704Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_offset(dt: datetime, tz: ZoneInfo) -> str:
    """Appointment style: ``2021-06-23T03:30:00+05:30`` in the location's timezone."""
    return dt.astimezone(tz).replace(microsecond=0).isoformat()


def parse_time(value: str, tz: ZoneInfo, field: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise unprocessable([f"{field} must be a valid ISO 8601 date string"]) from None
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


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


# --------------------------------------------------------------------------- seeded location data
def seed_custom_fields(location_id: str) -> list[dict[str, Any]]:
    def field(
        n: int, name: str, key: str, data_type: str, model: str = "contact", **kw: Any
    ) -> dict[str, Any]:
        return {
            "id": f"SbxCf{n:015d}",
            "name": name,
            "fieldKey": f"{model}.{key}",
            "placeholder": "",
            "dataType": data_type,
            "position": n * 50,
            "picklistOptions": kw.get("options", []),
            "picklistImageOptions": [],
            "isAllowedCustomOption": False,
            "isMultiFileAllowed": False,
            "maxFileLimit": 0,
            "locationId": location_id,
            "model": model,
        }

    statuses = ["Scheduled", "Confirmed", "Cancelled", "Showed", "No Show"]
    return [
        field(1, "Appointment Status", "appointment_status", "SINGLE_OPTIONS", options=statuses),
        field(2, "Next Appointment Date", "next_appointment_date", "DATE"),
        field(3, "Lead Score", "lead_score", "NUMERICAL"),
        field(4, "Budget", "budget", "MONETORY"),
        field(5, "Move-in Date", "move_in_date", "DATE"),
        field(6, "Preferred Unit", "preferred_unit", "TEXT"),
        field(7, "Deal Source", "deal_source", "TEXT", model="opportunity"),
    ]


def seed_calendars(location_id: str, first_id: str) -> list[dict[str, Any]]:
    weekdays = [
        {"daysOfTheWeek": [d], "hours": [{"openHour": 9, "openMinute": 0, "closeHour": 17, "closeMinute": 0}]}
        for d in range(1, 6)
    ]

    def cal(cid: str, name: str, slug: str) -> dict[str, Any]:
        return {
            "id": cid,
            "locationId": location_id,
            "groupId": "",
            "name": name,
            "description": "",
            "slug": slug,
            "widgetSlug": slug,
            "calendarType": "event",
            "widgetType": "classic",
            "eventTitle": "{{contact.name}}",
            "eventColor": "#039be5",
            "isActive": True,
            "teamMembers": [],
            "slotDuration": 30,
            "slotDurationUnit": "mins",
            "slotInterval": 30,
            "slotIntervalUnit": "mins",
            "slotBuffer": 0,
            "preBuffer": 0,
            "appoinmentPerSlot": 1,
            "appoinmentPerDay": 0,
            "allowBookingAfter": 0,
            "allowBookingFor": 60,
            "allowBookingForUnit": "days",
            "openHours": weekdays,
            "enableRecurring": False,
            "autoConfirm": True,
            "allowReschedule": True,
            "allowCancellation": True,
            "availabilityType": 0,
            "availabilities": [],
            "notifications": [],
        }

    return [
        cal(first_id, "Sandbox Consultation", "sandbox-consultation"),
        cal(first_id[:-1] + "2", "Sandbox Property Tour", "sandbox-tour"),
    ]


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


# --------------------------------------------------------------------------- calendars
def ghl_weekday(d: date) -> int:
    """GHL's ``daysOfTheWeek`` counts from Sunday = 0."""
    return (d.weekday() + 1) % 7


def free_slots(
    calendar: dict[str, Any],
    busy: list[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    out_tz: ZoneInfo,
) -> dict[str, list[str]]:
    """Slots inside openHours (in the location's ``tz``), stepping by slotInterval, minus overlaps
    with ``busy``; keyed by day and written with the offset of the caller's ``out_tz``."""
    step = timedelta(minutes=calendar["slotInterval"])
    length = timedelta(minutes=calendar["slotDuration"])
    out: dict[str, list[str]] = {}
    day = start.astimezone(tz).date() - timedelta(days=1)
    while day <= end.astimezone(tz).date():
        for rule in calendar["openHours"]:
            if ghl_weekday(day) not in rule["daysOfTheWeek"]:
                continue
            for hours in rule["hours"]:
                t = datetime(day.year, day.month, day.day, hours["openHour"], hours["openMinute"], tzinfo=tz)
                close = t.replace(hour=hours["closeHour"], minute=hours["closeMinute"])
                while t + length <= close:
                    free = all(not (t < b_end and b_start < t + length) for b_start, b_end in busy)
                    if start <= t <= end and free:
                        local = t.astimezone(out_tz)
                        out.setdefault(local.date().isoformat(), []).append(local.isoformat())
                    t += step
        day += timedelta(days=1)
    return out


# --------------------------------------------------------------------------- rate limits and stats
class LimitsConfig(Protocol):
    burst_max: int
    burst_interval_ms: int
    daily_limit: int


class RateLimiter:
    """Per-location sliding window (burst) plus a daily counter, on an injected clock.

    GHL documents 100 requests / 10 s and 200k / day per app and location, and reports both on
    every response; a rejected request does not consume budget.
    """

    def __init__(self, config: LimitsConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
            self._daily.clear()

    def _state(self, location: str, now: float) -> tuple[deque[float], int]:
        window = self._config.burst_interval_ms / 1000
        hits = self._hits.setdefault(location, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        day = int(now // 86_400)
        day_idx, used = self._daily.get(location, (day, 0))
        if day_idx != day:
            used = 0
        self._daily[location] = (day, used)
        return hits, used

    def _headers(self, burst_used: int, daily_used: int) -> list[tuple[bytes, bytes]]:
        c = self._config
        values = {
            "x-ratelimit-limit-daily": c.daily_limit,
            "x-ratelimit-daily-remaining": max(0, c.daily_limit - daily_used),
            "x-ratelimit-interval-milliseconds": c.burst_interval_ms,
            "x-ratelimit-max": c.burst_max,
            "x-ratelimit-remaining": max(0, c.burst_max - burst_used),
        }
        return [(k.encode(), str(v).encode()) for k, v in values.items()]

    def peek(self, location: str) -> list[tuple[bytes, bytes]]:
        with self._lock:
            hits, used = self._state(location, self._clock())
            return self._headers(len(hits), used)

    def hit(self, location: str) -> tuple[bool, list[tuple[bytes, bytes]]]:
        with self._lock:
            now = self._clock()
            hits, used = self._state(location, now)
            if len(hits) >= self._config.burst_max or used >= self._config.daily_limit:
                return False, self._headers(self._config.burst_max, used)
            hits.append(now)
            self._daily[location] = (int(now // 86_400), used + 1)
            return True, self._headers(len(hits), used + 1)


class Stats:
    """Request counters for benchmarks and assertions (control endpoints are not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.rate_limited = 0
        self.faults_injected = 0
        self.by_status: dict[str, int] = {}
        self.by_route: dict[str, int] = {}

    def record(self, route: str, status: int | None, faulted: bool = False) -> None:
        key = "reset" if status is None else str(status)
        with self._lock:
            self.total += 1
            self.by_status[key] = self.by_status.get(key, 0) + 1
            self.by_route[route] = self.by_route.get(route, 0) + 1
            self.rate_limited += status == 429
            self.faults_injected += faulted

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_status": dict(self.by_status),
                "rate_limited": self.rate_limited,
                "faults_injected": self.faults_injected,
                "by_route": dict(self.by_route),
            }

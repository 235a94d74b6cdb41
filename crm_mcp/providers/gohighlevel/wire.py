"""GoHighLevel wire shapes <-> neutral models: pure mapping functions, no I/O.

Kept apart from the connector so the rules of GHL's shapes — the properties each DTO defines,
custom fields written as `[{id|key, field_value}]` but read as `[{id, value}]`, appointment times
with an explicit offset, free slots keyed by date next to `traceId` — can be read and tested
without a client. A mapper that meets an unexpected shape raises; the connector turns that into
a typed error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from crm_mcp.connectors.base import Appointment, Calendar, Contact, FieldSchema, Note, Task
from crm_mcp.errors import InvalidRequestError

from .spec import STATUS_FROM_WIRE, STATUS_TO_WIRE

# neutral Contact attribute -> GHL property (all defined on UpsertContactDto and UpdateContactDto)
_CONTACT_FIELDS = {
    "first_name": "firstName",
    "last_name": "lastName",
    "name": "name",
    "email": "email",
    "phone": "phone",
    "company_name": "companyName",
    "source": "source",
    "timezone": "timezone",
}
# neutral Appointment attribute -> AppointmentEditSchema property (notes travel as description)
_APPOINTMENT_EDIT = {
    "calendar_id": "calendarId",
    "start_time": "startTime",
    "end_time": "endTime",
    "title": "title",
    "status": "appointmentStatus",
    "address": "address",
    "notes": "description",
}
_FIELD_ID = re.compile(r"[A-Za-z0-9]{20}")
_DATE_KEY = re.compile(r"\d{4}-\d{2}-\d{2}")

STANDARD_CONTACT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("firstName", "First Name", "TEXT"),
    ("lastName", "Last Name", "TEXT"),
    ("name", "Full Name", "TEXT"),
    ("email", "Email", "EMAIL"),
    ("phone", "Phone", "PHONE"),
    ("companyName", "Company Name", "TEXT"),
    ("address1", "Street Address", "TEXT"),
    ("city", "City", "TEXT"),
    ("state", "State", "TEXT"),
    ("postalCode", "Postal Code", "TEXT"),
    ("country", "Country (2-letter code)", "TEXT"),
    ("website", "Website", "TEXT"),
    ("timezone", "Time Zone", "TEXT"),
    ("dateOfBirth", "Date of Birth", "DATE"),
    ("source", "Source", "TEXT"),
    ("tags", "Tags", "TAGS"),
    ("dnd", "Do Not Disturb", "CHECKBOX"),
    ("assignedTo", "Assigned User", "TEXT"),
)

# calendar event properties (AppointmentCreateSchema / CalendarEventDTO): key, label, type, required
APPOINTMENT_FIELDS: tuple[tuple[str, str, str, bool], ...] = (
    ("calendarId", "Calendar", "TEXT", True),
    ("contactId", "Contact", "TEXT", True),
    ("startTime", "Start Time", "DATETIME", True),
    ("endTime", "End Time", "DATETIME", False),
    ("title", "Title", "TEXT", False),
    ("appointmentStatus", "Status", "SINGLE_OPTIONS", False),
    ("address", "Meeting Address", "TEXT", False),
    ("description", "Notes", "LARGE_TEXT", False),
    ("assignedUserId", "Assigned User", "TEXT", False),
)


# -- pure mapping ---------------------------------------------------------------------------
def wire_time(value: datetime) -> str:
    """ISO-8601 with an explicit offset (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="seconds")


def epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def custom_fields_to_wire(values: dict[str, Any]) -> list[dict[str, Any]]:
    """`{field id or key: value}` -> GHL write shape; a 20-char base62 name is an id, else a key."""
    return [
        {"id" if _FIELD_ID.fullmatch(name) else "key": name, "field_value": value}
        for name, value in values.items()
    ]


def contact_to_wire(contact: Contact) -> dict[str, Any]:
    body: dict[str, Any] = {
        wire: getattr(contact, attr)
        for attr, wire in _CONTACT_FIELDS.items()
        if getattr(contact, attr) is not None
    }
    if contact.tags:
        body["tags"] = list(contact.tags)
    if contact.custom_fields:
        body["customFields"] = custom_fields_to_wire(contact.custom_fields)
    return body


def contact_from_wire(data: dict[str, Any]) -> Contact:
    custom = {
        str(item["id"]): item.get("value", item.get("field_value"))
        for item in data.get("customFields") or []
        if isinstance(item, dict) and item.get("id")
    }
    return Contact(
        id=data.get("id"),
        first_name=data.get("firstName") or data.get("firstNameLowerCase"),
        last_name=data.get("lastName") or data.get("lastNameLowerCase"),
        name=data.get("name") or data.get("contactName") or data.get("fullNameLowerCase"),
        email=data.get("email"),
        phone=data.get("phone"),
        company_name=data.get("companyName"),
        source=data.get("source"),
        timezone=data.get("timezone"),
        tags=list(data.get("tags") or []),
        custom_fields=custom,
        date_added=data.get("dateAdded") or None,
        date_updated=data.get("dateUpdated") or None,
    )


def status_from_wire(value: Any) -> str:
    """GoHighLevel's `appointmentStatus` in the neutral vocabulary (unknown words: confirmed)."""
    return STATUS_FROM_WIRE.get(str(value).lower(), "confirmed")


def appointment_from_wire(data: dict[str, Any], fallback: Appointment | None = None) -> Appointment:
    return Appointment(
        id=data.get("id"),
        calendar_id=data.get("calendarId") or (fallback.calendar_id if fallback else None),
        contact_id=data.get("contactId") or (fallback.contact_id if fallback else ""),
        start_time=data.get("startTime") or (fallback.start_time if fallback else None),
        end_time=data.get("endTime") or (fallback.end_time if fallback else None),
        title=data.get("title") or (fallback.title if fallback else None),
        status=status_from_wire(data.get("appointmentStatus") or data.get("status") or "confirmed"),  # type: ignore[arg-type]
        address=data.get("address") or (fallback.address if fallback else None),
        notes=data.get("notes") or data.get("description") or (fallback.notes if fallback else None),
    )


def appointment_changes_to_wire(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(changes) - set(_APPOINTMENT_EDIT))
    if unknown:
        raise InvalidRequestError(
            f"gohighlevel appointment update: unknown field(s) {unknown}; "
            f"allowed {sorted(_APPOINTMENT_EDIT)}",
            provider="gohighlevel",
        )
    body: dict[str, Any] = {}
    for attr, value in changes.items():
        if value is None:
            continue
        if attr == "status":
            value = STATUS_TO_WIRE[value]
        body[_APPOINTMENT_EDIT[attr]] = wire_time(value) if isinstance(value, datetime) else value
    return body


def free_slots_from_wire(data: Any) -> dict[str, list[datetime]]:
    out: dict[str, list[datetime]] = {}
    if not isinstance(data, dict):
        return out
    for key, day in data.items():
        if not _DATE_KEY.fullmatch(str(key)) or not isinstance(day, dict):
            continue  # traceId and friends
        out[key] = [datetime.fromisoformat(str(s).replace("Z", "+00:00")) for s in day.get("slots") or []]
    return out


def notes_from_wire(items: Any) -> list[Note]:
    return [Note(id=n.get("id"), contact_id=n.get("contactId"), body=n.get("body") or "",
                 date_added=n.get("dateAdded") or None) for n in items or []]  # fmt: skip


def task_from_wire(t: dict[str, Any], contact_id: str) -> Task:
    return Task(id=t.get("id"), contact_id=t.get("contactId") or contact_id,
                title=t.get("title") or "", body=t.get("body"), due_date=t.get("dueDate"),
                completed=bool(t.get("completed")))  # fmt: skip


def field_from_wire(f: dict[str, Any]) -> FieldSchema:
    return FieldSchema(key=f.get("fieldKey") or f["id"], label=f.get("name") or f["id"],
                       type=f.get("dataType") or "TEXT", options=list(f.get("picklistOptions") or []),
                       custom=True, id=f.get("id"))  # fmt: skip


def calendar_from_wire(c: dict[str, Any]) -> Calendar:
    duration = c.get("slotDuration")
    if duration is not None and c.get("slotDurationUnit") == "hours":
        duration = duration * 60
    return Calendar(id=c["id"], name=c.get("name") or c["id"], description=c.get("description") or None,
                    is_active=c.get("isActive", True) is not False,
                    slot_duration_minutes=int(duration) if duration is not None else None)  # fmt: skip

"""Pure mappers between the neutral models and Zoho CRM records; no I/O.

Ids: a neutral contact is a record of the Leads module (the default, and where new people go) or
of the Contacts module. A lead's id is Zoho's own record id as is; a contact's is
`Contacts:<record id>` (`Leads:<id>` is accepted too), so an id alone says which module to call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any

from crm_mcp.connectors.base import (
    Appointment,
    CallActivity,
    Contact,
    FieldSchema,
    Note,
    Task,
)

from .spec import (
    APPOINTMENT_STATUS_FROM_WIRE,
    APPOINTMENT_STATUS_TO_WIRE,
    CALL_TYPES,
    CONTACTS,
    LEADS,
    MISSED_CALL_TYPE,
    PERSON_MODULES,
)

_STANDARD = {
    "id",
    "First_Name",
    "Last_Name",
    "Full_Name",
    "Email",
    "Phone",
    "Mobile",
    "Company",
    "Lead_Source",
    "Tag",
    "Created_Time",
    "Modified_Time",
    "Owner",
    "Created_By",
    "Modified_By",
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ()./-]{6,}")


class WireError(ValueError):
    """A value Zoho answered that does not fit the neutral model."""


# -- ids ------------------------------------------------------------------------------------------
def person_id(module: str, record_id: str) -> str:
    return str(record_id) if module == LEADS else f"{module}:{record_id}"


def split_id(neutral: str) -> tuple[str, str]:
    """(module, record id) of a neutral contact id; a bare id is a lead's."""
    module, sep, rest = neutral.partition(":")
    if sep and module in PERSON_MODULES:
        return module, rest
    return LEADS, neutral


def parent_link(contact_id: str) -> dict[str, Any]:
    """How an activity (call, task, event) names its lead or contact: a lead is `What_Id` with
    `$se_module`, a contact `Who_Id` (Zoho's Calls/Tasks/Events lookups; not in the OAS)."""
    module, record_id = split_id(contact_id)
    if module == CONTACTS:
        return {"Who_Id": {"id": record_id}}
    return {"What_Id": {"id": record_id}, "$se_module": module}


def linked_person(record: Mapping[str, Any]) -> str:
    who, what = record.get("Who_Id"), record.get("What_Id")
    if isinstance(who, dict) and who.get("id"):
        return person_id(CONTACTS, str(who["id"]))
    if isinstance(what, dict) and what.get("id"):
        return person_id(str(record.get("$se_module") or LEADS), str(what["id"]))
    return ""


# -- times ----------------------------------------------------------------------------------------
def to_wire_time(value: datetime) -> str:
    """ISO-8601 with an offset and no fractions, as Zoho takes date-times."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.replace(microsecond=0).isoformat()


def from_wire_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(str(value)), time(), UTC)
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration_to_wire(seconds: int) -> str:
    """Call_Duration is "mm:ss" (minutes may exceed 59)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def duration_from_wire(value: Any) -> int:
    text = str(value or "").strip()
    if ":" not in text:
        return int(text) if text.isdigit() else 0
    parts = [int(p) if p.isdigit() else 0 for p in text.split(":")]
    total = 0
    for part in parts:
        total = total * 60 + part
    return total


# -- people ---------------------------------------------------------------------------------------
def fallback_last_name(contact: Contact) -> str:
    """Last_Name is mandatory on a new lead: the name, the email's local part, or the phone."""
    if contact.name and contact.name.strip():
        return contact.name.strip().split()[-1]
    if contact.email:
        return contact.email.split("@", 1)[0]
    return contact.phone or "Unknown"


def person_record(contact: Contact) -> dict[str, Any]:
    """The fields a neutral contact sets (custom fields are resolved by the connector)."""
    r: dict[str, Any] = {}
    first, last = contact.first_name, contact.last_name
    if not first and not last and contact.name:
        first, _, last = contact.name.strip().rpartition(" ")
    pairs = {
        "First_Name": first or None,
        "Last_Name": last or None,
        "Email": contact.email,
        "Phone": contact.phone,
        "Company": contact.company_name,
        "Lead_Source": contact.source,
    }
    r.update({k: v for k, v in pairs.items() if v not in (None, "")})
    if contact.tags:
        r["Tag"] = [{"name": t} for t in contact.tags]
    return r


def contact_from_record(record: Mapping[str, Any], module: str) -> Contact:
    if not record.get("id"):
        raise WireError("a Zoho record without an id")
    tags = [str(t.get("name")) for t in record.get("Tag") or [] if isinstance(t, dict) and t.get("name")]
    custom = {
        k: v
        for k, v in record.items()
        if k not in _STANDARD and not k.startswith("$") and v not in (None, "")
    }
    first, last = record.get("First_Name"), record.get("Last_Name")
    name = record.get("Full_Name") or " ".join(p for p in (first, last) if p) or None
    return Contact(
        id=person_id(module, str(record["id"])),
        first_name=first,
        last_name=last,
        name=name,
        email=record.get("Email"),
        phone=record.get("Phone") or record.get("Mobile"),
        company_name=record.get("Company"),
        source=record.get("Lead_Source"),
        tags=tags,
        custom_fields=custom,
        date_added=from_wire_time(record.get("Created_Time")),
        date_updated=from_wire_time(record.get("Modified_Time")),
    )


def search_params(query: str) -> dict[str, str]:
    """Zoho's search takes exactly one of criteria, email, phone or word: pick by the query's shape."""
    q = query.strip()
    if q.startswith("(") and q.endswith(")"):
        return {"criteria": q}
    if _EMAIL.fullmatch(q):
        return {"email": q}
    if _PHONE.fullmatch(q) and sum(ch.isdigit() for ch in q) >= 6:
        return {"phone": q}
    return {"word": q}


def escape_criteria(value: str) -> str:
    """Parentheses and commas inside a criteria value are escaped with a backslash."""
    return re.sub(r"([(),\\])", r"\\\1", value)


def email_criteria(emails: list[str]) -> str:
    parts = [f"(Email:equals:{escape_criteria(e)})" for e in emails]
    return parts[0] if len(parts) == 1 else "(" + "or".join(parts) + ")"


def phone_variants(e164: str) -> list[str]:
    """The numbers to search for, E.164 first. Zoho's phone search compares the digits as stored
    (punctuation aside), so "+1 555 010 0001" is not found as "5550100001": only numbers with
    other digits are worth a call. North American numbers are also tried without the country
    code (other plans would need a number-plan library)."""
    digits = "".join(ch for ch in e164 if ch.isdigit())
    out = [e164.strip()]
    if len(digits) == 11 and digits.startswith("1"):
        out.append(digits[1:])
    return [v for v in out if v]


# -- per-record answers ---------------------------------------------------------------------------
def record_results(body: Any, count: int) -> list[dict[str, Any]]:
    """The per-record items of a write answer (201 / 202 / 207, or 400 when all failed), one per
    record sent. Raises WireError when the answer does not have one item per record."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != count or not all(isinstance(i, dict) for i in data):
        raise WireError(f"expected {count} per-record statuses in the answer")
    return data


def item_ok(item: Mapping[str, Any]) -> bool:
    return str(item.get("status") or "").lower() == "success"


def item_id(item: Mapping[str, Any]) -> str | None:
    details = item.get("details")
    rid = details.get("id") if isinstance(details, dict) else None
    return str(rid) if rid else None


def _details(item: Mapping[str, Any]) -> dict[str, Any]:
    details = item.get("details")
    return details if isinstance(details, dict) else {}


def item_error(item: Mapping[str, Any]) -> str:
    field = _details(item).get("api_name")
    where = f" on {field}" if field else ""
    return f"{item.get('code') or 'ERROR'}{where}: {item.get('message') or 'refused'}"


def missing_last_name(item: Mapping[str, Any]) -> bool:
    return item.get("code") == "MANDATORY_NOT_FOUND" and _details(item).get("api_name") == "Last_Name"


# -- activities -----------------------------------------------------------------------------------
def note_record(note: Note, api_version: str) -> dict[str, Any]:
    """v7/v8: `Parent_Id` is an object naming the module and the record; older versions took the
    id with `se_module` beside it."""
    module, record_id = split_id(note.contact_id)
    title = note.body.strip().splitlines()[0][:120] if note.body.strip() else "Note"
    if api_version in ("v7", "v8"):
        parent: dict[str, Any] = {"Parent_Id": {"module": {"api_name": module}, "id": record_id}}
    else:
        parent = {"Parent_Id": record_id, "se_module": module}
    return {"Note_Title": title, "Note_Content": note.body, **parent}


def note_from_record(record: Mapping[str, Any], contact_id: str) -> Note:
    return Note(
        id=str(record["id"]),
        contact_id=contact_id,
        body=str(record.get("Note_Content") or ""),
        date_added=from_wire_time(record.get("Created_Time")),
    )


def task_record(task: Task) -> dict[str, Any]:
    r = {
        "Subject": task.title,
        "Due_Date": task.due_date.date().isoformat(),
        "Status": "Completed" if task.completed else "Not Started",
        **parent_link(task.contact_id),
    }
    if task.body:
        r["Description"] = task.body
    return r


def task_from_record(record: Mapping[str, Any], contact_id: str) -> Task:
    due = from_wire_time(record.get("Due_Date")) or datetime.now(UTC)
    return Task(
        id=str(record["id"]),
        contact_id=contact_id or linked_person(record),
        title=str(record.get("Subject") or ""),
        body=record.get("Description"),
        due_date=due,
        completed=str(record.get("Status") or "").lower() == "completed",
    )


def event_record(a: Appointment) -> dict[str, Any]:
    end = a.end_time or a.start_time
    r: dict[str, Any] = {
        "Event_Title": a.title or "Appointment",
        "Start_DateTime": to_wire_time(a.start_time),
        "End_DateTime": to_wire_time(end),
        "Appointment_Status": APPOINTMENT_STATUS_TO_WIRE[a.status],
        **parent_link(a.contact_id),
    }
    if a.address:
        r["Venue"] = a.address
    if a.notes:
        r["Description"] = a.notes
    return r


def event_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Neutral appointment changes -> Events fields. Raises ValueError for unknown ones."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "status":
            if value not in APPOINTMENT_STATUS_TO_WIRE:
                raise ValueError(f"unknown appointment status {value!r}")
            out["Appointment_Status"] = APPOINTMENT_STATUS_TO_WIRE[value]
        elif key in ("start_time", "end_time"):
            when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
            out["Start_DateTime" if key == "start_time" else "End_DateTime"] = to_wire_time(when)
        elif key in ("title", "notes", "address"):
            out[{"title": "Event_Title", "notes": "Description", "address": "Venue"}[key]] = value
        else:
            raise ValueError(f"unknown appointment field {key!r}")
    return out


def appointment_from_record(record: Mapping[str, Any], contact_id: str = "") -> Appointment:
    start = from_wire_time(record.get("Start_DateTime"))
    if start is None:
        raise WireError("an event without Start_DateTime")
    status = APPOINTMENT_STATUS_FROM_WIRE.get(
        str(record.get("Appointment_Status") or "").lower(), "confirmed"
    )
    return Appointment(
        id=str(record["id"]),
        contact_id=contact_id or linked_person(record),
        start_time=start,
        end_time=from_wire_time(record.get("End_DateTime")),
        title=record.get("Event_Title"),
        status=status,  # type: ignore[arg-type]
        address=record.get("Venue"),
        notes=record.get("Description"),
    )


_REF = re.compile(r"\n*\[ref:([^\]\n]+)\]\s*$")


def with_reference(description: str, external_id: str | None) -> str:
    """The description with its `[ref:<external id>]` last line (how a call is found again)."""
    text = _REF.sub("", description or "")
    return f"{text}\n\n[ref:{external_id}]" if external_id else text


def call_reference(description: Any) -> str | None:
    found = _REF.search(str(description or ""))
    return found.group(1) if found else None


def call_record(call: CallActivity) -> dict[str, Any]:
    """A Calls record: Call_Type (Missed for a missed call), Call_Start_Time, Call_Duration
    ("mm:ss"), Subject, Description, the lead or contact, and the Owner."""
    r: dict[str, Any] = {
        "Subject": call.subject,
        "Call_Type": MISSED_CALL_TYPE if call.result == "missed" else CALL_TYPES[call.direction],
        "Call_Start_Time": to_wire_time(call.started_at),
        "Call_Duration": duration_to_wire(call.duration_seconds),
        "Description": with_reference(call.description, call.external_id),
        **parent_link(call.contact_id),
    }
    if call.owner_id:
        r["Owner"] = {"id": call.owner_id}
    return r


def call_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Neutral call changes (description, duration_seconds, owner_id) -> Calls fields.
    Raises ValueError for others."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "description":
            out["Description"] = str(value)
        elif key == "duration_seconds":
            out["Call_Duration"] = duration_to_wire(int(value))
        elif key == "owner_id":
            out["Owner"] = {"id": str(value)}
        elif key == "subject":
            out["Subject"] = str(value)
        else:
            raise ValueError(f"a call's {key!r} cannot be changed")
    return out


def call_from_record(record: Mapping[str, Any]) -> CallActivity:
    started = from_wire_time(record.get("Call_Start_Time"))
    if started is None:
        raise WireError("a call without Call_Start_Time")
    kind = str(record.get("Call_Type") or "")
    owner = record.get("Owner")
    return CallActivity(
        id=str(record["id"]),
        contact_id=linked_person(record),
        direction="outbound" if kind == CALL_TYPES["outbound"] else "inbound",
        result="missed" if kind == MISSED_CALL_TYPE else "answered",
        started_at=started,
        duration_seconds=duration_from_wire(record.get("Call_Duration")),
        subject=str(record.get("Subject") or ""),
        description=with_reference(str(record.get("Description") or ""), None),
        owner_id=str(owner["id"]) if isinstance(owner, dict) and owner.get("id") else None,
        external_id=call_reference(record.get("Description")),
    )


# -- field metadata -------------------------------------------------------------------------------
def field_from_wire(f: Mapping[str, Any]) -> FieldSchema:
    options = [
        str(o.get("actual_value") or o.get("display_value"))
        for o in f.get("pick_list_values") or []
        if isinstance(o, dict) and (o.get("actual_value") or o.get("display_value"))
    ]
    return FieldSchema(
        key=str(f["api_name"]),
        label=str(f.get("field_label") or f.get("display_label") or f["api_name"]),
        type=str(f.get("data_type") or "text"),
        required=bool(f.get("system_mandatory")),
        options=options,
        custom=bool(f.get("custom_field")),
    )


# the standard person fields every org has (before settings/fields was read)
CORE_PERSON_FIELDS = [
    FieldSchema(key="First_Name", label="First Name", type="text"),
    FieldSchema(key="Last_Name", label="Last Name", type="text", required=True),
    FieldSchema(key="Email", label="Email", type="email"),
    FieldSchema(key="Phone", label="Phone", type="phone"),
    FieldSchema(key="Mobile", label="Mobile", type="phone"),
    FieldSchema(key="Company", label="Company", type="text"),
    FieldSchema(key="Lead_Source", label="Lead Source", type="picklist"),
    FieldSchema(key="Lead_Status", label="Lead Status", type="picklist"),
]
EVENT_FIELDS = [
    FieldSchema(key="Event_Title", label="Title", type="text", required=True),
    FieldSchema(key="Start_DateTime", label="From", type="datetime", required=True),
    FieldSchema(key="End_DateTime", label="To", type="datetime", required=True),
    FieldSchema(key="Venue", label="Venue", type="text"),
    FieldSchema(key="Description", label="Description", type="textarea"),
    FieldSchema(
        key="Appointment_Status",
        label="Appointment Status",
        type="picklist",
        options=list(APPOINTMENT_STATUS_TO_WIRE.values()),
        custom=True,
    ),
]

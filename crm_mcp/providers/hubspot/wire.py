"""HubSpot CRM v3 wire shapes <-> neutral models: pure mapping functions, no I/O.

Rules of HubSpot's shapes kept here (official OpenAPI files; crm-apis.md §3):
- every object is a `SimplePublicObject` `{id, properties: {name: string|null}, createdAt, ...}`
  and every property value is written as a string (`additionalProperties: string`);
- a `date` property takes midnight UTC (sent as `YYYY-MM-DD`), a `datetime` an ISO-8601 instant;
- notes, tasks and meetings are objects of their own, tied to a contact by an association;
- a batch answers 200, or 207 with `errors[]` (`StandardError`, whose `context` names the ids or
  emails that failed) next to the `results` that went through, in no promised order.
A mapper that meets an unexpected shape raises; the connector turns that into a typed error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from crm_mcp.connectors.base import Appointment, BatchItem, CallActivity, Contact, FieldSchema, Note, Task
from crm_mcp.errors import InvalidRequestError

from .spec import OUTCOME_FROM_WIRE, OUTCOME_TO_WIRE

# neutral Contact attribute -> HubSpot contact property (standard, writable)
CONTACT_PROPERTIES = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "phone": "phone",
    "company_name": "company",
}
CONTACT_STAMPS = ("createdate", "lastmodifieddate", "hs_object_id")
# the core standard contact properties, for `contact_fields()` before the portal's are loaded
CORE_CONTACT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("email", "Email", "string"),
    ("firstname", "First Name", "string"),
    ("lastname", "Last Name", "string"),
    ("phone", "Phone Number", "string"),
    ("mobilephone", "Mobile Phone Number", "string"),
    ("company", "Company Name", "string"),
    ("jobtitle", "Job Title", "string"),
    ("website", "Website URL", "string"),
    ("address", "Street Address", "string"),
    ("city", "City", "string"),
    ("state", "State/Region", "string"),
    ("zip", "Postal Code", "string"),
    ("country", "Country/Region", "string"),
    ("lifecyclestage", "Lifecycle Stage", "enumeration"),
    ("hs_lead_status", "Lead Status", "enumeration"),
    ("hubspot_owner_id", "Contact Owner", "enumeration"),
    ("createdate", "Create Date", "datetime"),
    ("lastmodifieddate", "Last Modified Date", "datetime"),
)
NOTE_PROPERTIES = ("hs_note_body", "hs_timestamp")
TASK_PROPERTIES = ("hs_task_subject", "hs_task_body", "hs_task_status", "hs_timestamp")
MEETING_PROPERTIES = (
    "hs_meeting_title",
    "hs_meeting_body",
    "hs_meeting_location",
    "hs_meeting_start_time",
    "hs_meeting_end_time",
    "hs_meeting_outcome",
    "hs_timestamp",
)
# the meeting properties an appointment is written to: (name, label, type, required)
MEETING_FIELDS: tuple[tuple[str, str, str, bool], ...] = (
    ("hs_timestamp", "Activity date", "datetime", True),
    ("hs_meeting_start_time", "Start Time", "datetime", False),
    ("hs_meeting_end_time", "End Time", "datetime", False),
    ("hs_meeting_title", "Meeting name", "string", False),
    ("hs_meeting_outcome", "Meeting outcome", "enumeration", False),
    ("hs_meeting_location", "Location", "string", False),
    ("hs_meeting_body", "Meeting description", "string", False),
)
MEETING_OUTCOMES = ("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED")
# neutral appointment change -> meeting property (start_time also moves the activity date)
MEETING_CHANGES = {
    "status": "hs_meeting_outcome",
    "start_time": "hs_meeting_start_time",
    "end_time": "hs_meeting_end_time",
    "title": "hs_meeting_title",
    "notes": "hs_meeting_body",
    "address": "hs_meeting_location",
}
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")


# -- values -----------------------------------------------------------------------------------
def wire_instant(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds, as HubSpot writes it (naive datetimes are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()  # the calendar day where the value lives, not UTC's
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def property_value(value: Any, kind: str = "string") -> str:
    """A value as the string HubSpot takes for a property of type `kind` (`Property.type`).

    `date` properties hold midnight UTC, so any date or instant becomes its `YYYY-MM-DD`;
    `datetime` ones take an ISO instant; booleans are `true`/`false`; None clears (empty string).
    """
    if value is None:
        return ""
    if kind == "date":
        day = _as_date(value)
        if day is not None:
            return day.isoformat()
    if isinstance(value, datetime):
        return wire_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def properties_to_wire(values: Mapping[str, Any], kinds: Mapping[str, str]) -> dict[str, str]:
    return {name: property_value(v, kinds.get(name, "string")) for name, v in values.items()}


def existing_contact_id(message: str) -> str | None:
    """The id in HubSpot's 409 "Contact already exists. Existing ID: 512", or None."""
    found = _EXISTING_ID.search(message)
    return found.group(1) if found else None


# -- contacts ---------------------------------------------------------------------------------
def contact_properties(contact: Contact) -> dict[str, str]:
    """The standard properties of a neutral contact (custom fields are resolved separately).

    HubSpot has no full-name property: `name` alone is split into first and last name. Tags,
    source and timezone have no writable counterpart and are not sent.
    """
    props = {
        wire: str(getattr(contact, attr))
        for attr, wire in CONTACT_PROPERTIES.items()
        if getattr(contact, attr) is not None
    }
    if contact.name and not (contact.first_name or contact.last_name):
        first, _, last = contact.name.strip().partition(" ")
        props["firstname"] = first
        if last.strip():
            props["lastname"] = last.strip()
    return props


def contact_from_wire(data: Mapping[str, Any]) -> Contact:
    props: Mapping[str, Any] = data.get("properties") or {}
    standard = set(CONTACT_PROPERTIES.values()) | set(CONTACT_STAMPS)
    custom = {k: v for k, v in props.items() if k not in standard and v not in (None, "")}
    first, last = props.get("firstname") or None, props.get("lastname") or None
    return Contact(
        id=str(data["id"]),
        first_name=first,
        last_name=last,
        name=" ".join(p for p in (first, last) if p) or None,
        email=props.get("email") or None,
        phone=props.get("phone") or None,
        company_name=props.get("company") or None,
        custom_fields=custom,
        date_added=data.get("createdAt") or props.get("createdate") or None,
        date_updated=data.get("updatedAt") or props.get("lastmodifieddate") or None,
    )


def field_from_wire(prop: Mapping[str, Any]) -> FieldSchema:
    """A `Property` as a neutral field: its name is the key (HubSpot addresses properties by name)."""
    options = [str(o["value"]) for o in prop.get("options") or [] if not o.get("hidden")]
    return FieldSchema(
        key=str(prop["name"]),
        label=str(prop.get("label") or prop["name"]),
        type=str(prop.get("type") or "string"),
        options=options,
        custom=not prop.get("hubspotDefined", False),
    )


def writable(prop: Mapping[str, Any]) -> bool:
    """Whether a client may set the property (not calculated, not read-only, not archived)."""
    meta = prop.get("modificationMetadata") or {}
    return not (meta.get("readOnlyValue") or prop.get("calculated") or prop.get("archived"))


# -- activities -------------------------------------------------------------------------------
def association(contact_id: str, type_id: int) -> list[dict[str, Any]]:
    """The `associations` input of a create that ties the new activity to its contact."""
    spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
    return [{"to": {"id": contact_id}, "types": [spec]}]


def associated_ids(page: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The ids of a v4 association read page and the cursor of the next one."""
    ids = [str(r["toObjectId"]) for r in page.get("results") or []]
    nxt = ((page.get("paging") or {}).get("next") or {}).get("after")
    return ids, str(nxt) if nxt else None


def associated_contact(data: Mapping[str, Any]) -> str | None:
    """The first contact in a v3 read's `associations` map (`?associations=contacts`)."""
    found = ((data.get("associations") or {}).get("contacts") or {}).get("results") or []
    return str(found[0]["id"]) if found else None


def note_properties(note: Note, now: datetime) -> dict[str, str]:
    return {"hs_note_body": note.body, "hs_timestamp": wire_instant(note.date_added or now)}


def note_from_wire(data: Mapping[str, Any], contact_id: str) -> Note:
    props = data.get("properties") or {}
    return Note(
        id=str(data["id"]),
        contact_id=contact_id,
        body=props.get("hs_note_body") or "",
        date_added=props.get("hs_timestamp") or data.get("createdAt") or None,
    )


# -- calls (engagements of type call) -------------------------------------------------------------
CALL_PROPERTIES = (
    "hs_call_title",
    "hs_call_body",
    "hs_call_direction",
    "hs_call_status",
    "hs_call_duration",
    "hs_timestamp",
    "hubspot_owner_id",
)
# neutral call result -> hs_call_status, and back (a voicemail is a call nobody answered)
CALL_STATUS = {"answered": "COMPLETED", "missed": "MISSED", "voicemail": "NO_ANSWER"}
_CALL_RESULT = {v: k for k, v in CALL_STATUS.items()}


def call_marker(external_id: str) -> str:
    """The tag a call's body carries so a retried create finds it (HubSpot has no external id)."""
    return f"[call-session:{external_id}]"


def call_properties(call: CallActivity) -> dict[str, str]:
    body = call.description
    if call.external_id:
        body = f"{body}\n\n{call_marker(call.external_id)}"
    props = {
        "hs_call_title": call.subject,
        "hs_call_body": body,
        "hs_call_direction": call.direction.upper(),
        "hs_call_status": CALL_STATUS[call.result],
        "hs_call_duration": str(call.duration_seconds * 1000),
        "hs_timestamp": wire_instant(call.started_at),
    }
    if call.owner_id:
        props["hubspot_owner_id"] = call.owner_id
    return props


def call_changes_to_wire(changes: Mapping[str, Any], body_marker: str | None) -> dict[str, str]:
    props: dict[str, str] = {}
    if "description" in changes:
        body = str(changes["description"])
        props["hs_call_body"] = f"{body}\n\n{body_marker}" if body_marker else body
    if "duration_seconds" in changes:
        props["hs_call_duration"] = str(int(changes["duration_seconds"]) * 1000)
    if changes.get("owner_id"):
        props["hubspot_owner_id"] = str(changes["owner_id"])
    return props


def call_from_wire(data: Mapping[str, Any], contact_id: str) -> CallActivity:
    props = data.get("properties") or {}
    body = props.get("hs_call_body") or ""
    found = re.search(r"\[call-session:([^\]]+)\]", body)
    duration = props.get("hs_call_duration")
    return CallActivity(
        id=str(data["id"]),
        contact_id=contact_id,
        direction="outbound" if str(props.get("hs_call_direction")).upper() == "OUTBOUND" else "inbound",
        result=_CALL_RESULT.get(str(props.get("hs_call_status") or "").upper(), "answered"),
        started_at=props.get("hs_timestamp") or data.get("createdAt"),
        duration_seconds=int(float(duration)) // 1000 if duration else 0,
        subject=props.get("hs_call_title") or "",
        description=body.replace(found.group(0), "").rstrip() if found else body,
        owner_id=props.get("hubspot_owner_id") or None,
        external_id=found.group(1) if found else None,
    )


def task_properties(task: Task) -> dict[str, str]:
    props = {
        "hs_task_subject": task.title,
        "hs_task_status": "COMPLETED" if task.completed else "NOT_STARTED",
        "hs_timestamp": wire_instant(task.due_date),
    }
    if task.body:
        props["hs_task_body"] = task.body
    return props


def task_from_wire(data: Mapping[str, Any], contact_id: str) -> Task:
    props = data.get("properties") or {}
    return Task(
        id=str(data["id"]),
        contact_id=contact_id,
        title=props.get("hs_task_subject") or "",
        body=props.get("hs_task_body") or None,
        due_date=props.get("hs_timestamp") or data.get("createdAt"),
        completed=props.get("hs_task_status") == "COMPLETED",
    )


def status_from_wire(outcome: Any) -> str:
    """`hs_meeting_outcome` in the neutral vocabulary (none or unknown: scheduled)."""
    return OUTCOME_FROM_WIRE.get(str(outcome or "").upper(), "scheduled")


def meeting_properties(appointment: Appointment) -> dict[str, str]:
    a = appointment
    props = {
        "hs_timestamp": wire_instant(a.start_time),
        "hs_meeting_start_time": wire_instant(a.start_time),
        "hs_meeting_outcome": OUTCOME_TO_WIRE[a.status],
    }
    optional = {
        "hs_meeting_end_time": a.end_time and wire_instant(a.end_time),
        "hs_meeting_title": a.title,
        "hs_meeting_body": a.notes,
        "hs_meeting_location": a.address,
    }
    props.update({k: v for k, v in optional.items() if v})
    return props


def meeting_changes_to_wire(changes: Mapping[str, Any]) -> dict[str, str]:
    """Neutral appointment changes -> meeting properties.

    Raises:
        InvalidRequestError: an unknown field, or a status outside the neutral vocabulary.
    """
    unknown = sorted(set(changes) - set(MEETING_CHANGES))
    if unknown:
        raise InvalidRequestError(
            f"hubspot appointment update: unknown field(s) {unknown}; allowed {sorted(MEETING_CHANGES)}",
            provider="hubspot",
        )
    props: dict[str, str] = {}
    for key, value in changes.items():
        if key == "status":
            if value not in OUTCOME_TO_WIRE:
                raise InvalidRequestError(
                    f"hubspot appointment update: status {value!r} is not one of {sorted(OUTCOME_TO_WIRE)}",
                    provider="hubspot",
                )
            props["hs_meeting_outcome"] = OUTCOME_TO_WIRE[value]
        elif key in ("start_time", "end_time"):
            when = datetime.fromisoformat(value) if isinstance(value, str) else value
            props[MEETING_CHANGES[key]] = wire_instant(when)
            if key == "start_time":
                props["hs_timestamp"] = wire_instant(when)
        else:
            props[MEETING_CHANGES[key]] = property_value(value)
    return props


def appointment_from_wire(
    data: Mapping[str, Any], contact_id: str, wanted_status: str | None = None
) -> Appointment:
    """A meeting as a neutral appointment (no calendar). `wanted_status` is the neutral status
    the caller wrote: kept when it maps to the outcome read back (confirmed and scheduled are
    both SCHEDULED in HubSpot)."""
    props = data.get("properties") or {}
    outcome = props.get("hs_meeting_outcome")
    status = status_from_wire(outcome)
    if wanted_status and OUTCOME_TO_WIRE.get(wanted_status) == str(outcome or "").upper():
        status = wanted_status
    return Appointment(
        id=str(data["id"]),
        calendar_id=None,
        contact_id=contact_id,
        start_time=props.get("hs_meeting_start_time") or props.get("hs_timestamp"),
        end_time=props.get("hs_meeting_end_time") or None,
        title=props.get("hs_meeting_title") or None,
        status=status,  # type: ignore[arg-type]
        address=props.get("hs_meeting_location") or None,
        notes=props.get("hs_meeting_body") or None,
    )


# -- batch ------------------------------------------------------------------------------------
def upsert_input(contact: Contact, properties: Mapping[str, str]) -> dict[str, Any]:
    """One `SimplePublicObjectBatchInputUpsert` keyed by email."""
    assert contact.email
    return {"idProperty": "email", "id": contact.email, "properties": dict(properties)}


def upsert_rounds(contacts: Sequence[Contact], size: int) -> list[list[int]]:
    """Input indexes of the contacts that have an email, in calls of at most `size` with no email
    twice in one call (HubSpot refuses a batch with a repeated id); a repeat goes in a later call,
    so the last write of an email wins as it would one by one."""
    calls: list[list[int]] = []
    last_call: dict[str, int] = {}
    for i, c in enumerate(contacts):
        if not c.email:
            continue
        key = c.email.strip().lower()
        n = last_call.get(key, -1) + 1
        while n < len(calls) and len(calls[n]) >= size:
            n += 1
        if n == len(calls):
            calls.append([])
        calls[n].append(i)
        last_call[key] = n
    return calls


def _error_keys(error: Mapping[str, Any]) -> Iterable[str]:
    context = error.get("context") or {}
    for key in ("emails", "ids"):
        for value in context.get(key) or []:
            yield str(value).strip().lower()


def batch_items(
    body: Mapping[str, Any], indexes: Sequence[int], contacts: Sequence[Contact]
) -> list[BatchItem]:
    """A batch-upsert answer (200, or 207 with `errors[]`) as one BatchItem per input, matched
    back to its input by email (results come in no promised order)."""
    by_email = {str(contacts[i].email).strip().lower(): i for i in indexes}
    items: dict[int, BatchItem] = {}
    for result in body.get("results") or []:
        email = str((result.get("properties") or {}).get("email") or "").strip().lower()
        if email in by_email:
            i = by_email[email]
            items[i] = BatchItem(i, contact_from_wire(result), created=bool(result.get("new")))
    for error in body.get("errors") or []:
        message = str(error.get("message") or error.get("category") or "refused")
        for key in _error_keys(error):
            if key in by_email and by_email[key] not in items:
                items[by_email[key]] = BatchItem(by_email[key], error=message)
    return [
        items.get(i) or BatchItem(i, error="hubspot returned no result for this contact") for i in indexes
    ]

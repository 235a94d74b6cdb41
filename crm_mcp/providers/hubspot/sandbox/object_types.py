"""The CRM object types the simulator serves, and the association types between them, as data.

Each type differs from the others only in facts — which properties it has, which are required,
which come back when none are asked for, what its timestamps are called (contacts say
``createdate``/``lastmodifieddate``, activities ``hs_createdate``/``hs_lastmodifieddate``) — so the
routes are written once over an ``ObjectType``.

Association type ids are HubSpot-defined and directional (note→contact 202, contact→note 201, …).
The official OpenAPI files do not list them; they are HubSpot's documented defaults as widely used
by integrations (crm-apis.md §3.6 marks them unverified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crm_mcp.providers.hubspot.sandbox.property_defs import (
    call_properties,
    contact_properties,
    meeting_properties,
    note_properties,
    task_properties,
)


@dataclass(frozen=True)
class ObjectType:
    name: str  # plural path segment: "contacts"
    type_id: str  # HubSpot object type id: "0-1"
    singular: str  # "contact" — association labels and aliases
    id_param: str  # the spec's path parameter: "contactId"
    created_prop: str
    modified_prop: str
    defaults: tuple[str, ...]  # properties returned when the request names none
    required: tuple[str, ...]  # properties a create must carry
    query_props: tuple[str, ...]  # what a search ``query`` looks through
    schema: dict[str, dict[str, Any]] = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        """How HubSpot names the type in messages ("Could not get some CONTACT objects")."""
        return self.singular.upper()

    @property
    def always(self) -> tuple[str, ...]:
        """Returned with every read, whatever ``properties`` asked for."""
        return (self.created_prop, "hs_object_id", self.modified_prop)


def _index(props: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in props}


_ACTIVITY_STAMPS = ("hs_createdate", "hs_lastmodifieddate")

CONTACTS = ObjectType(
    name="contacts",
    type_id="0-1",
    singular="contact",
    id_param="contactId",
    created_prop="createdate",
    modified_prop="lastmodifieddate",
    defaults=("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    required=(),
    query_props=("email", "firstname", "lastname", "phone", "mobilephone", "company"),
    schema=_index(contact_properties()),
)
NOTES = ObjectType(
    name="notes",
    type_id="0-46",
    singular="note",
    id_param="noteId",
    created_prop=_ACTIVITY_STAMPS[0],
    modified_prop=_ACTIVITY_STAMPS[1],
    defaults=("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    required=("hs_timestamp",),
    query_props=("hs_note_body",),
    schema=_index(note_properties()),
)
TASKS = ObjectType(
    name="tasks",
    type_id="0-27",
    singular="task",
    id_param="taskId",
    created_prop=_ACTIVITY_STAMPS[0],
    modified_prop=_ACTIVITY_STAMPS[1],
    defaults=("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    required=("hs_timestamp",),
    query_props=("hs_task_subject", "hs_task_body"),
    schema=_index(task_properties()),
)
MEETINGS = ObjectType(
    name="meetings",
    type_id="0-47",
    singular="meeting",
    id_param="meetingId",
    created_prop=_ACTIVITY_STAMPS[0],
    modified_prop=_ACTIVITY_STAMPS[1],
    defaults=("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    required=("hs_timestamp",),
    query_props=("hs_meeting_title", "hs_meeting_body"),
    schema=_index(meeting_properties()),
)
CALLS = ObjectType(
    name="calls",
    type_id="0-48",
    singular="call",
    id_param="callId",
    created_prop=_ACTIVITY_STAMPS[0],
    modified_prop=_ACTIVITY_STAMPS[1],
    defaults=("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    required=("hs_timestamp",),
    query_props=("hs_call_title", "hs_call_body"),
    schema=_index(call_properties()),
)

OBJECT_TYPES: dict[str, ObjectType] = {t.name: t for t in (CONTACTS, NOTES, TASKS, MEETINGS, CALLS)}
_ALIASES = {alias: t for t in OBJECT_TYPES.values() for alias in (t.name, t.singular, t.type_id)}


def resolve_type(name: str) -> ObjectType | None:
    """``contacts``, ``contact`` and ``0-1`` all name the contact type (as in HubSpot's paths)."""
    return _ALIASES.get(name.lower())


@dataclass(frozen=True)
class AssociationType:
    from_type: str
    to_type: str
    type_id: int
    name: str  # the v3 ``AssociatedId.type`` label, e.g. "note_to_contact"


_PAIRS = [
    ("notes", "contacts", 202, "note_to_contact"),
    ("contacts", "notes", 201, "contact_to_note"),
    ("tasks", "contacts", 204, "task_to_contact"),
    ("contacts", "tasks", 203, "contact_to_task"),
    ("meetings", "contacts", 200, "meeting_event_to_contact"),
    ("contacts", "meetings", 199, "contact_to_meeting_event"),
    ("calls", "contacts", 194, "call_to_contact"),
    ("contacts", "calls", 193, "contact_to_call"),
]
ASSOCIATION_TYPES: dict[int, AssociationType] = {p[2]: AssociationType(*p) for p in _PAIRS}
_BY_PAIR = {(a.from_type, a.to_type): a for a in ASSOCIATION_TYPES.values()}


def association_between(from_type: str, to_type: str) -> AssociationType | None:
    return _BY_PAIR.get((from_type, to_type))

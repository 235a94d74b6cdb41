"""Request schemas of the GoHighLevel simulator and the validation its API layer applies.

GHL answers 422 to any body property its DTO does not define, so a connector that sends an extra
field must fail here as it would there. The schemas are hand-copied from the official OpenAPI files
(a test cross-checks each one), and ``ApiError`` is the NestJS-shaped error every rule raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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

"""Provider-neutral models, the neutral vocabulary, and the capability protocols.

A provider package (`crm_mcp.providers.<name>`) maps these neutral shapes to and from its wire
shapes and nothing else. Tools and the sync engine only ever see these models and words: a
provider's own words (GoHighLevel `showed`, HubSpot meeting outcomes, Zoho picklist values) never
leave its package.

Capabilities, not one fat protocol: a connector implements the small protocols its API allows
(`Contacts`, `Notes`, `Tasks`, `Appointments`, `Calendars`, `CustomFields`, `Batch`, `Tags`), and a
caller asks for the one it needs with `require(connector, Notes)`, which answers in words the
model can act on when the connector does not have it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar, cast, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from crm_mcp.errors import CapabilityError

AppointmentStatus = Literal["scheduled", "confirmed", "cancelled", "completed", "no_show"]
APPOINTMENT_STATUSES: tuple[str, ...] = get_args(AppointmentStatus)
LeadStatus = Literal["new", "contacted", "qualified", "tour_scheduled", "application", "leased", "lost"]
LEAD_STATUSES: tuple[str, ...] = get_args(LeadStatus)
# Custom fields the engine writes, by logical name; each provider resolves them to its own keys
# (`ProviderSpec.logical_fields`). A key that is not a logical name is passed to the CRM as is.
LogicalField = Literal["appointment_status", "next_appointment_date", "lead_score", "lead_status"]
LOGICAL_FIELDS: tuple[str, ...] = get_args(LogicalField)


class _Neutral(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Contact(_Neutral):
    id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    company_name: str | None = None
    source: str | None = None
    timezone: str | None = None
    tags: list[str] = Field(default_factory=list)
    custom_fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Custom field values: read back keyed by field id; written by logical name "
        "(LOGICAL_FIELDS) or by the CRM's own field key or id.",
    )
    date_added: datetime | None = None
    date_updated: datetime | None = None


class Note(_Neutral):
    id: str | None = None
    contact_id: str
    body: str
    date_added: datetime | None = None


class Task(_Neutral):
    id: str | None = None
    contact_id: str
    title: str
    body: str | None = None
    due_date: datetime
    completed: bool = False


class Appointment(_Neutral):
    """An appointment as the CRM holds it: a calendar event, or a meeting where the CRM has no
    calendars (`calendar_id` is then None)."""

    id: str | None = None
    calendar_id: str | None = None
    contact_id: str
    start_time: datetime
    end_time: datetime | None = None
    title: str | None = None
    status: AppointmentStatus = "confirmed"
    address: str | None = None
    notes: str | None = None


class Calendar(_Neutral):
    id: str
    name: str
    description: str | None = None
    is_active: bool = True
    slot_duration_minutes: int | None = None


class FieldSchema(_Neutral):
    """One field of a CRM object in a neutral shape (used by the schema analyzer)."""

    key: str
    label: str
    type: str
    required: bool = False
    options: list[str] = Field(default_factory=list)
    custom: bool = False
    id: str | None = None


class ContactPage(_Neutral):
    contacts: list[Contact]
    total: int | None = None
    next_cursor: str | None = None


CallDirection = Literal["inbound", "outbound"]
CallResult = Literal["answered", "missed", "voicemail"]


class CallRecording(_Neutral):
    """A call's recording as the telephony provider holds it. `ready` is False while the provider
    is still processing it (the log is updated later, never written twice)."""

    id: str
    content_uri: str | None = None
    content_type: str | None = None
    duration_seconds: int | None = None
    ready: bool = True


class CallSession(_Neutral):
    """One phone call as the caller lived it: one per telephony session, never one per leg (a call
    to a queue that nobody answered is one missed call, not one per queue member)."""

    id: str = Field(description="The telephony provider's session id: the idempotency key of its log.")
    direction: CallDirection
    result: CallResult
    started_at: datetime
    duration_seconds: int = 0
    from_number: str | None = Field(default=None, description="E.164 when the provider knows it.")
    from_name: str | None = None
    to_number: str | None = None
    to_name: str | None = None
    extension: str | None = Field(default=None, description="The internal extension that handled it.")
    recording: CallRecording | None = None


class CallLogPage(_Neutral):
    calls: list[CallSession]
    next_cursor: str | None = None


class CallActivity(_Neutral):
    """A call logged on a contact (a lead or a contact in CRMs that have both): the CRM's native
    call activity where it has one. `external_id` is the telephony session id."""

    id: str | None = None
    contact_id: str
    direction: CallDirection
    result: CallResult
    started_at: datetime
    duration_seconds: int = 0
    subject: str
    description: str
    owner_id: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class EndpointLimit:
    """A budget some endpoints have on top of the connection's burst window (e.g. a search API
    allowed a few requests per second), kept by its own limiter in the HTTP client.

    A request matches when its method is in `methods` and its path (as passed to the client)
    fully matches `path_pattern`. A 429 answered to a matching request is charged to this budget
    when the body field `ProviderSpec.rate_limit_policy_field` names one of `policies` (or, with
    no policies declared, when it carries no Retry-After); otherwise to the burst window.
    """

    name: str
    path_pattern: str
    limit: int
    interval_s: float
    methods: tuple[str, ...] = ("GET", "POST")
    policies: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderSpec:
    """A provider's quirks as data: base URL, headers, rate-limit header names, error body shape."""

    name: str
    default_base_url: str
    version_headers: dict[str, str] = field(default_factory=dict)
    # header names the provider uses to tell us about its limits (empty string: not sent)
    remaining_header: str = ""
    limit_header: str = ""
    interval_ms_header: str = ""
    daily_remaining_header: str = ""
    daily_limit_header: str = ""
    reset_epoch_header: str = ""
    request_id_header: str = ""
    # body field of JSON responses (errors included) that carries the provider's trace id
    request_id_body_field: str = ""
    # default limits when the provider has not told us yet
    burst_limit: int = 100
    burst_interval_s: float = 10.0
    daily_limit: int | None = None
    # a spent daily budget whose reset time the provider does not send is looked at again this
    # long after it read 0 (one request): providers reset at times they do not announce (HubSpot
    # at midnight in the account's time zone, Zoho over a rolling 24 h), so none is assumed
    daily_recheck_s: float = 600.0
    # logical custom-field name (LOGICAL_FIELDS) -> this provider's field key
    logical_fields: Mapping[str, str] = field(default_factory=dict)
    # the tenant a connection is bound to (webhooks must name it): its option and what to call it
    tenant_option: str = ""
    tenant_label: str = "account"
    # whether `ping()` goes into that tenant, so a passing ping proves it exists (the preflight
    # says "exists" only then; a failing one is always reported)
    ping_checks_tenant: bool = False
    # endpoints with a budget of their own, and the 429 body field that names the policy hit
    endpoint_limits: tuple[EndpointLimit, ...] = ()
    rate_limit_policy_field: str = ""
    # the message of an error body whose shape the shared reader does not know (e.g. per-record
    # errors in a `data` list); "" falls back to the usual top-level message fields
    error_message: Callable[[Any], str] | None = None


@dataclass(frozen=True)
class BatchItem:
    """One record's outcome in a batch write: its index in the request, and the saved contact
    (with `created`) or the error that refused it. A partial failure is not a total failure."""

    index: int
    contact: Contact | None = None
    created: bool = False
    error: str | None = None


@runtime_checkable
class Connector(Protocol):
    """What every connector has. Every method of every capability raises only CRMError subclasses."""

    provider: str
    connection: str

    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...


@runtime_checkable
class Contacts(Connector, Protocol):
    """Contacts by natural key (email / phone): upsert never makes a second contact."""

    async def upsert_contact(self, contact: Contact) -> tuple[Contact, bool]: ...
    async def get_contact(self, contact_id: str) -> Contact: ...
    async def search_contacts(self, query: str | None, limit: int, cursor: str | None) -> ContactPage: ...
    async def set_contact_fields(self, contact_id: str, values: Mapping[str, Any]) -> None:
        """Write custom fields by logical name or CRM key; unknown fields and values the CRM's
        picklist does not offer are skipped (logged), never a failure."""
        ...


@runtime_checkable
class Tags(Connector, Protocol):
    async def add_tags(self, contact_id: str, tags: list[str]) -> list[str]: ...
    async def remove_tags(self, contact_id: str, tags: list[str]) -> list[str]: ...


@runtime_checkable
class Notes(Connector, Protocol):
    async def add_note(self, note: Note) -> Note: ...
    async def list_notes(self, contact_id: str) -> list[Note]: ...


@runtime_checkable
class Tasks(Connector, Protocol):
    async def create_task(self, task: Task) -> Task: ...
    async def list_tasks(self, contact_id: str) -> list[Task]: ...


@runtime_checkable
class Appointments(Connector, Protocol):
    """Appointments on a contact: calendar events, or meetings (no calendar) where that is all
    the CRM has. `update_appointment` takes neutral changes: status, start_time, end_time, title."""

    async def create_appointment(self, appointment: Appointment) -> Appointment: ...
    async def update_appointment(self, appointment_id: str, changes: dict[str, Any]) -> Appointment: ...
    async def get_appointment(self, appointment_id: str) -> Appointment: ...
    async def list_contact_appointments(self, contact_id: str) -> list[Appointment]: ...


@runtime_checkable
class Calendars(Connector, Protocol):
    async def list_calendars(self) -> list[Calendar]: ...
    async def free_slots(
        self, calendar_id: str, start: datetime, end: datetime, timezone: str | None
    ) -> dict[str, list[datetime]]: ...


@runtime_checkable
class CustomFields(Connector, Protocol):
    """Schema discovery: the standard and custom fields of contacts, in the neutral shape."""

    async def list_custom_fields(self) -> list[FieldSchema]: ...
    def contact_fields(self) -> list[FieldSchema]: ...
    def appointment_fields(self) -> list[FieldSchema]:
        """The fields of an appointment (calendar event or meeting); statuses as the CRM's options."""
        ...


@runtime_checkable
class Batch(Connector, Protocol):
    """Many contacts per call (upsert and lookup by email); `max_batch` per request."""

    max_batch: int

    async def upsert_contacts(self, contacts: list[Contact]) -> list[BatchItem]: ...
    async def get_contacts_by_email(self, emails: list[str]) -> dict[str, Contact]:
        """The contacts that have these emails, keyed by the email lower-cased; an email no
        contact has is absent (not an error). `max_batch` emails per request."""
        ...


@runtime_checkable
class PhoneLookup(Connector, Protocol):
    """Contacts (leads included) by phone: read-only, trying the CRM's own phone formats where its
    search is strict."""

    async def find_contacts_by_phone(self, e164: str) -> list[Contact]: ...


@runtime_checkable
class CallActivities(Connector, Protocol):
    """Calls logged as the CRM's native call activity (not a note)."""

    async def log_call(self, call: CallActivity) -> CallActivity: ...
    async def find_call(self, contact_id: str, external_id: str) -> CallActivity | None:
        """The contact's call logged with this `external_id` (read before a create that an
        interrupted attempt may already have made), or None."""
        ...

    async def update_call(self, call_id: str, changes: Mapping[str, Any]) -> CallActivity:
        """Neutral changes: description, duration_seconds, owner_id; `external_id` (the call's,
        unchanged) may come along so a CRM that keeps it in the description need not read it."""
        ...


@runtime_checkable
class Attachments(Connector, Protocol):
    """Files attached to a contact (a call's recording, for one)."""

    max_attachment_bytes: int

    async def attach_file(self, contact_id: str, filename: str, content: bytes, content_type: str) -> str:
        """Upload `content` and return the attachment's id."""
        ...

    async def find_attachment(self, contact_id: str, filename: str) -> str | None:
        """The id of the contact's attachment with this file name, or None."""
        ...


@runtime_checkable
class CallLogs(Connector, Protocol):
    """A telephony provider's call log: sessions by time range, and their recordings."""

    async def list_calls(self, since: datetime, until: datetime, cursor: str | None) -> CallLogPage: ...
    async def download_recording(self, recording: CallRecording, max_bytes: int) -> tuple[bytes, str]:
        """The recording's content (streamed, refused past `max_bytes`) and its content type."""
        ...


# capability name -> protocol; the names are what providers declare and errors show
CAPABILITIES: dict[str, type[Connector]] = {
    "contacts": Contacts,
    "tags": Tags,
    "notes": Notes,
    "tasks": Tasks,
    "appointments": Appointments,
    "calendars": Calendars,
    "custom_fields": CustomFields,
    "batch": Batch,
    "phone_lookup": PhoneLookup,
    "call_activities": CallActivities,
    "attachments": Attachments,
    "call_logs": CallLogs,
}
_NAMES = {proto: name for name, proto in CAPABILITIES.items()}
# what to do instead when a connection lacks a capability (said in the CapabilityError)
WITHOUT = {
    "calendars": "Book with create_appointment and a start time instead: it needs no free-slot calendar.",
    "tags": "Tags are skipped for it; notes and tasks carry the same facts.",
    "batch": "Records go one call each instead of in batches.",
    "call_activities": "Calls are logged as notes instead.",
    "attachments": "Recordings are linked in the note instead (the provider's links expire).",
}
C = TypeVar("C", bound=Connector)


def capability_name(protocol: type[Connector]) -> str:
    return _NAMES[protocol]


def capabilities_of(connector: object) -> frozenset[str]:
    """The capabilities a connector implements (by its methods, as the protocols define them)."""
    return frozenset(name for name, proto in CAPABILITIES.items() if has(connector, proto))


def has(connector: object, protocol: type) -> bool:
    """`isinstance(connector, protocol)`, decided once per connector class: a check against a
    runtime-checkable protocol looks up every member each time (a handler asks per step). A
    capability belongs to the class: its methods, and attributes every instance sets."""
    key = (type(connector), protocol)
    known = _CONFORMS.get(key)
    if known is None:
        known = _CONFORMS[key] = isinstance(connector, protocol)
    return known


_CONFORMS: dict[tuple[type, type], bool] = {}


def require(connector: Connector, protocol: type[C]) -> C:
    """The connector as `protocol`, or CapabilityError naming what it lacks.

    Raises:
        CapabilityError: the connector's provider has no such capability.
    """
    if has(connector, protocol):
        return cast(C, connector)
    name = capability_name(protocol)
    raise CapabilityError(
        f"{connector.provider} connection {connector.connection!r} has no {name.replace('_', ' ')} "
        f"capability. {WITHOUT.get(name, '')}".strip(),
        provider=connector.provider,
        capability=name,
    )

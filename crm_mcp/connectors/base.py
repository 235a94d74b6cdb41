"""Provider-neutral models and the `Connector` protocol.

A provider file (e.g. `gohighlevel.py`) maps these neutral shapes to and from its wire shapes and
nothing else. Tools and the sync engine only ever see these models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

AppointmentStatus = Literal["new", "confirmed", "cancelled", "showed", "noshow", "invalid"]


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
        default_factory=dict, description="Custom field values keyed by field id (or key when writing)."
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
    """A calendar appointment as the CRM holds it."""

    id: str | None = None
    calendar_id: str
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


@runtime_checkable
class Connector(Protocol):
    """Provider-neutral operations. Every method raises only `crm_mcp.errors.CRMError` subclasses."""

    provider: str
    connection: str
    capabilities: frozenset[str]

    async def ping(self) -> None: ...
    async def upsert_contact(self, contact: Contact) -> tuple[Contact, bool]: ...
    async def get_contact(self, contact_id: str) -> Contact: ...
    async def search_contacts(self, query: str | None, limit: int, cursor: str | None) -> ContactPage: ...
    async def update_contact_custom_fields(self, contact_id: str, values: dict[str, Any]) -> Contact: ...
    async def add_tags(self, contact_id: str, tags: list[str]) -> list[str]: ...
    async def remove_tags(self, contact_id: str, tags: list[str]) -> list[str]: ...
    async def add_note(self, note: Note) -> Note: ...
    async def list_notes(self, contact_id: str) -> list[Note]: ...
    async def create_task(self, task: Task) -> Task: ...
    async def list_tasks(self, contact_id: str) -> list[Task]: ...
    async def list_custom_fields(self) -> list[FieldSchema]: ...
    async def list_calendars(self) -> list[Calendar]: ...
    async def free_slots(
        self, calendar_id: str, start: datetime, end: datetime, timezone: str | None
    ) -> dict[str, list[datetime]]: ...
    async def create_appointment(self, appointment: Appointment) -> Appointment: ...
    async def update_appointment(self, appointment_id: str, changes: dict[str, Any]) -> Appointment: ...
    async def get_appointment(self, appointment_id: str) -> Appointment: ...
    async def list_contact_appointments(self, contact_id: str) -> list[Appointment]: ...
    async def aclose(self) -> None: ...

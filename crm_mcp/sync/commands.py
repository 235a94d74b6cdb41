"""Typed outbox commands: one pydantic model per action, versioned, and the one helper that queues them.

An outbox payload is a contract between the code that queues it (a tool, a repair, an automation)
and the handler that delivers it, possibly after an upgrade. Plain dicts held that contract by key
names spread over several modules; a command model holds it in one place, validated on both sides.

A command's JSON is the operation's payload, and the idempotency check hashes it: a model must
dump to exactly the payload earlier versions stored, so a replay after an upgrade is still
recognised. A later, incompatible shape gets a new `version` (stored as `v`) and its handler
reads both.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # tools import the command models at start-up; SQLAlchemy stays lazy
    from sqlalchemy.ext.asyncio import AsyncSession

    from crm_mcp.state.models import SyncOperation


class Command(BaseModel):
    """Base of every outbox command: its action name, the local entity it changes, its version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: ClassVar[str]
    entity_type: ClassVar[str]
    version: ClassVar[int] = 1

    def entity_id(self) -> str:
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        return data if self.version == 1 else {**data, "v": self.version}

    @classmethod
    def of(cls, op: SyncOperation) -> Self:
        """The command an operation carries (raises pydantic.ValidationError on a foreign shape)."""
        return cls.model_validate({k: v for k, v in (op.payload or {}).items() if k != "v"})


class Person(BaseModel):
    """Who an appointment is with: matched in the CRM by email or phone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


class ContactData(Person):
    """A contact to upsert: custom fields by logical name or CRM key."""

    company_name: str | None = None
    source: str | None = None
    tags: list[str] = Field(default_factory=list)
    custom_fields: dict[str, Any] = Field(default_factory=dict)


class AppointmentCreate(Command):
    """Book: upsert the contact, create the appointment (read-before-create), booking note, reminder task."""

    action = "appointment.create"
    entity_type = "appointment"

    appointment_id: str
    contact: Person
    calendar_id: str | None
    start_time: str
    end_time: str | None
    timezone: str
    title: str | None
    notes: str | None
    status: str

    def entity_id(self) -> str:
        return self.appointment_id


class AppointmentChange(Command):
    """Confirm, cancel, complete, reschedule or repair an appointment already in the CRM."""

    action = "appointment.status"
    entity_type = "appointment"

    appointment_id: str
    action_name: Literal["confirm", "cancel", "complete", "update", "repair"] = Field(alias="action")
    reason: str | None = None
    changes: dict[str, Any]
    request: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def entity_id(self) -> str:
        return self.appointment_id

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=self.request is None)


class ContactUpsert(Command):
    """Create or update a contact by natural key (email / phone), remembered for its local lead."""

    action = "contact.upsert"
    entity_type = "lead"

    lead_id: str
    contact: ContactData

    def entity_id(self) -> str:
        return self.lead_id


class ContactNote(Command):
    """A note on a CRM contact, added once (found by its marker before it is created again)."""

    action = "contact.note"
    entity_type = "contact"

    contact_id: str
    body: str

    def entity_id(self) -> str:
        return self.contact_id


class FollowUpTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    body: str
    due_hours: float = 4


class LeadApply(Command):
    """A lead score applied to the CRM: the score field, band tags, and a follow-up task."""

    action = "lead.apply"
    entity_type = "lead"

    lead_id: str
    contact_id: str | None
    score: float
    band: str
    tags: list[str]
    score_field: str
    contact: ContactData | None
    task: FollowUpTask | None

    def entity_id(self) -> str:
        return self.lead_id


async def queue(
    session: AsyncSession,
    command: Command,
    *,
    key: str,
    connection: str,
    now: datetime,
    deadline: timedelta,
) -> tuple[SyncOperation, bool]:
    """Add `command` to the outbox in the caller's transaction; returns (operation, created).

    Raises:
        IdempotencyError: `key` was used before for a different request.
    """
    from crm_mcp.state.outbox import enqueue  # lazy: see the TYPE_CHECKING block

    return await enqueue(
        session,
        idempotency_key=key,
        connection=connection,
        action=command.action,
        payload=command.payload(),
        entity_type=command.entity_type,
        entity_id=command.entity_id(),
        now=now,
        deadline=deadline,
    )

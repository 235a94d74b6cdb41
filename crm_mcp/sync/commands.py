"""Typed outbox commands: one pydantic model per action, versioned, and the one helper that queues them.

An outbox payload is a contract between the code that queues it (a tool, a repair, an automation)
and the handler that delivers it, possibly after an upgrade. Plain dicts held that contract by key
names spread over several modules; a command model holds it in one place, validated on both sides.

A command's JSON is the operation's payload, and the idempotency check hashes it: a model must
dump to exactly the payload earlier versions stored, so a replay after an upgrade is still
recognised. A later, incompatible shape gets a new `version` (stored as `v`) and its handler
reads both.

Every value a command carries is bounded (names and ids, free text, tags, custom fields), so
nothing unbounded reaches the outbox whoever builds the command. The tools bound their
arguments well inside these limits; these are the backstop, wide enough for any real CRM record.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crm_mcp.scope import scoped_key

if TYPE_CHECKING:  # tools import the command models at start-up; SQLAlchemy stays lazy
    from sqlalchemy.ext.asyncio import AsyncSession

    from crm_mcp.state.models import SyncOperation


MAX_TEXT = 65_536  # notes, bodies, reasons
MAX_FIELD_JSON = 65_536  # one custom field value, as JSON
Short = Annotated[str, Field(max_length=255)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Tags = Annotated[list[Short], Field(max_length=500)]


def _bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        if len(key) > 255 or len(json.dumps(item, default=str)) > MAX_FIELD_JSON:
            raise ValueError(
                f"{key[:60]!r}: a key over 255 characters or a value over {MAX_FIELD_JSON} as JSON"
            )
    return value


FieldValues = Annotated[dict[str, Any], Field(max_length=500), AfterValidator(_bounded_json)]


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

    first_name: Short | None = None
    last_name: Short | None = None
    email: Annotated[str, Field(max_length=320)] | None = None
    phone: Short | None = None


class ContactData(Person):
    """A contact to upsert: custom fields by logical name or CRM key."""

    company_name: Short | None = None
    source: Short | None = None
    tags: Tags = Field(default_factory=list)
    custom_fields: FieldValues = Field(default_factory=dict)


class AppointmentCreate(Command):
    """Book: upsert the contact, create the appointment (read-before-create), booking note, reminder task."""

    action = "appointment.create"
    entity_type = "appointment"

    appointment_id: Short
    contact: Person
    calendar_id: Short | None
    start_time: Short
    end_time: Short | None
    timezone: Short
    title: Short | None
    notes: Text | None
    status: Short

    def entity_id(self) -> str:
        return self.appointment_id


class AppointmentChange(Command):
    """Confirm, cancel, complete, reschedule or repair an appointment already in the CRM."""

    action = "appointment.status"
    entity_type = "appointment"

    appointment_id: Short
    action_name: Literal["confirm", "cancel", "complete", "update", "repair"] = Field(alias="action")
    reason: Text | None = None
    changes: FieldValues
    request: Short | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def entity_id(self) -> str:
        return self.appointment_id

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=self.request is None)


class ContactUpsert(Command):
    """Create or update a contact by natural key (email / phone), remembered for its local lead."""

    action = "contact.upsert"
    entity_type = "lead"

    lead_id: Short
    contact: ContactData

    def entity_id(self) -> str:
        return self.lead_id


class ContactNote(Command):
    """A note on a CRM contact, added once (found by its marker before it is created again)."""

    action = "contact.note"
    entity_type = "contact"

    contact_id: Short
    body: Text

    def entity_id(self) -> str:
        return self.contact_id


class FollowUpTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Short
    body: Text
    due_hours: float = Field(4, ge=0, le=24 * 365)


class LeadApply(Command):
    """A lead score applied to the CRM: the score field, band tags, and a follow-up task."""

    action = "lead.apply"
    entity_type = "lead"

    lead_id: Short
    contact_id: Short | None
    score: float = Field(ge=0, le=100)
    band: Short
    tags: Tags
    score_field: Short
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
    fresh: bool = False,
) -> tuple[SyncOperation, bool]:
    """Add `command` to the outbox in the caller's transaction; returns (operation, created).

    `fresh`: nothing the command creates can be in the CRM yet (it is keyed to a record or an
    operation made in this transaction), so the first attempt skips its reads before creates.
    Leave it False for anything that may repeat earlier work (a repair, a re-sync).

    Raises:
        IdempotencyError: `key` was used before for a different request.
    """
    from crm_mcp.state.outbox import enqueue  # lazy: see the TYPE_CHECKING block

    return await enqueue(
        session,
        idempotency_key=scoped_key(key),  # a tenant's keys are its own (crm_mcp.scope)
        connection=connection,
        action=command.action,
        payload=command.payload(),
        entity_type=command.entity_type,
        entity_id=command.entity_id(),
        now=now,
        deadline=deadline,
        fresh=fresh,
    )

"""Output models shared by the tools (inputs are annotated parameters of each tool function)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

LocalAppointmentStatus = Literal["scheduled", "confirmed", "cancelled", "completed", "no_show"]


class ContactInfo(BaseModel):
    first_name: str
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


class AppointmentRecord(BaseModel):
    """The local system-of-record view of an appointment."""

    id: str = Field(description="Local appointment id; pass it to update_appointment_status.")
    connection: str
    calendar_id: str | None = Field(
        None, description="CRM calendar id; none where the CRM has no calendars (its meetings)."
    )
    contact: ContactInfo
    start_time: datetime
    end_time: datetime | None = None
    timezone: str | None = None
    title: str | None = None
    notes: str | None = None
    status: LocalAppointmentStatus
    version: int
    created_at: datetime
    updated_at: datetime


class AppointmentResult(BaseModel):
    """What a write returns at once: the local record and the sync operation that delivers it."""

    appointment: AppointmentRecord
    sync_operation_id: str = Field(description="Id of the outbox operation; see get_sync_status.")
    sync_status: Literal["pending", "in_flight", "succeeded", "dead"]
    replayed: bool = Field(
        description="True when this idempotency key was seen before and the saved result is returned."
    )
    message: str


class OperationSummary(BaseModel):
    id: str
    action: str
    connection: str
    status: str
    attempts: int
    last_error: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    next_attempt_at: datetime | None = None
    result: dict[str, Any] | None = None


class RetryResult(BaseModel):
    dry_run: bool
    requeued: list[OperationSummary] = Field(
        description="Operations put back in the outbox (or that would be)."
    )
    count: int
    message: str

"""Output models shared by the tools (inputs are annotated parameters of each tool function)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, model_validator

LocalAppointmentStatus = Literal["scheduled", "confirmed", "cancelled", "completed", "no_show"]


class ContactInfo(BaseModel):
    first_name: str
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None


class AppointmentRecord(BaseModel):
    """The local system-of-record view of an appointment."""

    id: str = Field(description="Local id; pass it to update_appointment_status.")
    connection: str
    calendar_id: str | None = None
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

    @model_validator(mode="after")
    def _in_own_zone(self) -> AppointmentRecord:
        """Every time of the record with the offset of the appointment's time zone, whether it was
        just booked or read back from the database (which keeps UTC): one format in every tool."""
        for name in ("start_time", "end_time", "created_at", "updated_at"):
            setattr(self, name, in_zone(getattr(self, name), self.timezone))
        return self


def in_zone(value: datetime | None, zone: str | None) -> datetime | None:
    """`value` shown in time zone `zone` (a naive value is UTC, as the database stores it)."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        return aware.astimezone(ZoneInfo(zone or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return aware


class AppointmentResult(BaseModel):
    """What a write returns at once: the local record and the sync operation that delivers it."""

    appointment: AppointmentRecord
    sync_operation_id: str
    sync_status: Literal["pending", "in_flight", "succeeded", "dead"]
    replayed: bool
    message: str
    warning: str | None = None  # the connection's last check failed: what to fix (see INSTRUCTIONS)


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
    requeued: list[OperationSummary] = Field(description="Requeued (with dry_run: would be).")
    count: int
    message: str

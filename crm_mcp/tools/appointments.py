"""Appointment lifecycle tools: create_appointment and update_appointment_status.

Each write stores the local record and its outbox operation in one transaction and returns at
once; the worker delivers it to the CRM. Idempotency keys make a repeated call return the saved
result instead of a second booking.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from crm_mcp.connectors.registry import get_provider
from crm_mcp.sync.commands import AppointmentChange, AppointmentCreate, Person
from crm_mcp.tools._base import crm_tool, queue_write
from crm_mcp.tools.args import ConnectionArg, IdempotencyArg, SaneDateTime
from crm_mcp.tools.models import AppointmentRecord, AppointmentResult, ContactInfo

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime
    from crm_mcp.state.models import Appointment

_NS = uuid.UUID("5b0e7a52-3f0c-4b8e-9a61-0c6f1f2d7a10")

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PHONE_PATTERN = r"^\+?[0-9 ()./-]{7,20}$"


def derive_key(kind: str, args: dict[str, Any]) -> str:
    blob = json.dumps({"kind": kind, **args}, sort_keys=True, default=str)
    return f"derived:{kind}:{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"timezone {name!r} is not an IANA time zone name; use e.g. 'America/New_York' or 'UTC'."
        ) from None


def _aware(value: datetime, tz: ZoneInfo) -> datetime:
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def to_record(a: Appointment) -> AppointmentRecord:
    return AppointmentRecord(
        id=a.id,
        connection=a.connection,
        calendar_id=a.calendar_id,
        contact=ContactInfo(
            first_name=a.contact_first_name,
            last_name=a.contact_last_name,
            email=a.contact_email,
            phone=a.contact_phone,
        ),
        start_time=a.start_time,
        end_time=a.end_time,
        timezone=a.timezone,
        title=a.title,
        notes=a.notes,
        status=a.status,  # type: ignore[arg-type]
        version=a.version,
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


def create_command(a: Appointment) -> AppointmentCreate:
    """The snapshot the worker delivers: everything the CRM needs, nothing secret."""
    return AppointmentCreate(
        appointment_id=a.id,
        contact=Person(
            first_name=a.contact_first_name,
            last_name=a.contact_last_name,
            email=a.contact_email,
            phone=a.contact_phone,
        ),
        calendar_id=a.calendar_id,
        start_time=a.start_time.isoformat(),
        end_time=a.end_time.isoformat() if a.end_time else None,
        timezone=a.timezone,
        title=a.title,
        notes=a.notes,
        status=a.status,
    )


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Book an appointment (synced to the CRM)",
        read_only=False,
        destructive=False,
        idempotent=True,
        open_world=True,
    )
    async def create_appointment(
        first_name: Annotated[str, Field(min_length=1, max_length=100, examples=["Jane"])],
        start_time: Annotated[
            SaneDateTime,
            Field(
                description="Start, ISO 8601. With an offset, or local time in `timezone`.",
                examples=["2026-12-01T15:00:00-05:00"],
            ),
        ],
        email: Annotated[
            str | None,
            Field(
                description="Contact email (email or phone is required).",
                pattern=EMAIL_PATTERN,
                max_length=254,
                examples=["jane@example.com"],
            ),
        ] = None,
        phone: Annotated[
            str | None,
            Field(
                description="Contact phone, E.164 preferred.",
                pattern=PHONE_PATTERN,
                max_length=32,
                examples=["+15551234567"],
            ),
        ] = None,
        last_name: Annotated[str | None, Field(max_length=100, examples=["Doe"])] = None,
        duration_minutes: Annotated[int, Field(ge=5, le=480, description="Length of the appointment.")] = 30,
        timezone: Annotated[
            str,
            Field(
                max_length=64, description="IANA time zone of the appointment.", examples=["America/New_York"]
            ),
        ] = "UTC",
        title: Annotated[str | None, Field(max_length=200, examples=["Property tour"])] = None,
        notes: Annotated[
            str | None, Field(max_length=4000, description="Booking details for the CRM note.")
        ] = None,
        calendar_id: Annotated[
            str | None,
            Field(max_length=128, description="CRM calendar id; defaults to the connection's calendar."),
        ] = None,
        connection: ConnectionArg = None,
        idempotency_key: IdempotencyArg = None,
    ) -> AppointmentResult:
        """Book an appointment in the local system of record and queue its delivery to the CRM.

        Delivery (contact upsert, calendar appointment, booking note, reminder task, tags and custom
        fields) happens asynchronously in the sync worker; the result carries the sync operation id.
        """
        if not email and not phone:
            raise ToolError("Give the contact's email or phone (or both): the CRM matches contacts by them.")
        tz = _zone(timezone)
        conn = rt.connection(connection, "appointments")
        cal = calendar_id or conn.options.get("calendar_id")
        if not cal and "calendars" in get_provider(conn.provider).capabilities:
            raise ToolError(
                f"No calendar_id given and connection {conn.name!r} has no default calendar "
                "(its calendar_id option). Call find_free_slots to choose one."
            )
        start = _aware(start_time, tz)
        end = start + timedelta(minutes=duration_minutes)
        args = {
            "connection": conn.name,
            "calendar_id": cal,
            "first_name": first_name,
            "last_name": last_name,
            "email": email.lower() if email else None,
            "phone": phone,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "timezone": timezone,
            "title": title,
            "notes": notes,
        }
        key = idempotency_key or derive_key("appointment.create", args)
        appointment_id = str(uuid.uuid5(_NS, f"{conn.name}:{key}"))

        from crm_mcp.state.models import Appointment

        now = rt.clock()
        appt = Appointment(
            id=appointment_id,
            connection=conn.name,
            contact_first_name=first_name,
            contact_last_name=last_name,
            contact_email=args["email"],
            contact_phone=phone,
            calendar_id=cal,
            start_time=start,
            end_time=end,
            timezone=timezone,
            title=title or f"Appointment with {first_name} {last_name or ''}".strip(),
            notes=notes,
            status="confirmed",
            source="mcp",
            created_at=now,
            updated_at=now,
            version=1,
        )
        saved: list[Appointment] = [appt]

        async def write_local(session: Any, created: bool) -> None:
            # Same key + same arguments returns the saved operation; different arguments raise.
            if created:
                session.add(appt)
            elif (found := await session.get(Appointment, appointment_id)) is not None:
                saved[0] = found

        # fresh: the booking is new in this transaction and only this operation delivers it (its
        # note and task are marked with its id), so nothing of it can be in the CRM yet: the first
        # delivery skips its look-ups. A replayed key returns the operation as it is.
        op, created = await queue_write(
            rt, create_command(appt), key=key, connection=conn.name, local=write_local, fresh=True
        )
        appt = saved[0]
        record = to_record(appt)
        msg = (
            "Booked locally; delivery to the CRM is queued."
            if created
            else "This idempotency key was used before; returning the saved booking."
        )
        return AppointmentResult(
            appointment=record,
            sync_operation_id=op.id,
            sync_status=op.status,  # type: ignore[arg-type]
            replayed=not created,
            message=msg,
        )

    @crm_tool(
        server,
        title="Confirm, cancel, complete or reschedule an appointment",
        read_only=False,
        destructive=True,
        idempotent=True,
        open_world=True,
    )
    async def update_appointment_status(
        appointment_id: Annotated[
            str, Field(max_length=64, description="Local appointment id from create_appointment.")
        ],
        action: Annotated[
            Literal["confirm", "cancel", "complete", "update"],
            Field(
                description="confirm; cancel (adds a follow-up task); complete (satisfaction task, "
                "customer tag); update (reschedule or edit title/notes)."
            ),
        ],
        reason: Annotated[
            str | None, Field(max_length=1000, description="Why (kept in the CRM task/note).")
        ] = None,
        start_time: Annotated[SaneDateTime | None, Field(description="New start for action=update.")] = None,
        duration_minutes: Annotated[int | None, Field(ge=5, le=480)] = None,
        title: Annotated[str | None, Field(max_length=200)] = None,
        notes: Annotated[str | None, Field(max_length=4000)] = None,
        idempotency_key: IdempotencyArg = None,
    ) -> AppointmentResult:
        """Change an appointment's status locally and queue the matching CRM changes."""
        from crm_mcp.state.models import Appointment
        from crm_mcp.sync.commands import queue

        db = await rt.database()
        now = rt.clock()
        async with db.begin_write() as session:
            appt = await session.get(Appointment, appointment_id)
            if appt is None:
                raise ToolError(
                    f"No appointment with id {appointment_id!r}. Use the id returned by create_appointment."
                )
            args = {
                "appointment_id": appointment_id,
                "action": action,
                "reason": reason,
                "start_time": start_time.isoformat() if start_time else None,
                "duration_minutes": duration_minutes,
                "title": title,
                "notes": notes,
            }
            digest = derive_key("appointment.status", args)  # what is asked, whatever the key
            key = idempotency_key or digest
            prior = await _op_for_key(session, key)
            if prior is None:
                changes = _apply_transition(appt, action, args, now)
                command = AppointmentChange(
                    appointment_id=appt.id, action_name=action, reason=reason, changes=changes, request=digest
                )
                deadline = timedelta(seconds=rt.settings.sync_deadline_seconds)
                # fresh: its task or note is marked with the new operation's id, so none exists yet
                op, created = await queue(
                    session,
                    command,
                    key=key,
                    connection=appt.connection,
                    now=now,
                    deadline=deadline,
                    fresh=True,
                )
            else:
                if not _same_status_request(prior, appointment_id, digest):
                    from crm_mcp.state.outbox import key_reused  # lazy: SQLAlchemy stays off start-up

                    raise key_reused(key, appt.connection, used_by=(prior.action, prior.connection, prior.id))
                op, created = prior, False
        rt.touch()
        return AppointmentResult(
            appointment=to_record(appt),
            sync_operation_id=op.id,
            sync_status=op.status,  # type: ignore[arg-type]
            replayed=not created,
            message=f"{action} recorded locally; CRM update queued." if created else "Replayed saved result.",
        )


async def _op_for_key(session: Any, key: str) -> Any:
    from sqlalchemy import select

    from crm_mcp.state.models import SyncOperation

    return (
        await session.execute(select(SyncOperation).where(SyncOperation.idempotency_key == key))
    ).scalar_one_or_none()


def _same_status_request(prior: Any, appointment_id: str, digest: str) -> bool:
    """Whether a saved operation was made by this very update_appointment_status request."""
    if prior.action != "appointment.status" or prior.entity_id != appointment_id:
        return False
    return bool((prior.payload or {}).get("request") == digest)


_TRANSITIONS: dict[str, tuple[set[str], str | None]] = {
    "confirm": ({"scheduled", "confirmed"}, "confirmed"),
    "cancel": ({"scheduled", "confirmed"}, "cancelled"),
    "complete": ({"scheduled", "confirmed"}, "completed"),
    "update": ({"scheduled", "confirmed"}, None),
}


def _apply_transition(appt: Appointment, action: str, args: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Validate and apply a status change to the local record; return the changes to deliver."""
    allowed, new_status = _TRANSITIONS[action]
    if appt.status not in allowed:
        raise ToolError(
            f"Cannot {action} an appointment that is {appt.status}. "
            + ("Book a new appointment instead." if appt.status in {"cancelled", "completed"} else "")
        )
    changes: dict[str, Any] = {}
    if action == "update":
        if not any(args[k] for k in ("start_time", "duration_minutes", "title", "notes")):
            raise ToolError("action=update needs at least one of start_time, duration_minutes, title, notes.")
        tz = _zone(appt.timezone or "UTC")
        if args["start_time"] or args["duration_minutes"]:
            start = (
                _aware(datetime.fromisoformat(args["start_time"]), tz)
                if args["start_time"]
                else appt.start_time
            )
            length = (appt.end_time - appt.start_time) if appt.end_time else timedelta(minutes=30)
            minutes = args["duration_minutes"] or int(length.total_seconds() // 60)
            appt.start_time, appt.end_time = start, start + timedelta(minutes=minutes)
            changes["start_time"], changes["end_time"] = (
                appt.start_time.isoformat(),
                appt.end_time.isoformat(),
            )
        for field in ("title", "notes"):
            if args[field]:
                setattr(appt, field, args[field])
                changes[field] = args[field]
    else:
        assert new_status is not None
        appt.status = new_status
        changes["status"] = new_status
    appt.version += 1
    appt.updated_at = now
    return changes

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

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import Field

from crm_mcp.connectors.registry import get_provider
from crm_mcp.scope import current_principal, scoped_key
from crm_mcp.sync.commands import AppointmentChange, AppointmentCreate, Person
from crm_mcp.tools._base import crm_tool, queue_write
from crm_mcp.tools.args import ConnectionArg, IdempotencyArg, SaneDateTime
from crm_mcp.tools.confirm import ConfirmArg, Confirmation, Verdict, ask, confirmed
from crm_mcp.tools.models import AppointmentRecord, AppointmentResult, ContactInfo

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime
    from crm_mcp.state.models import Appointment

_NS = uuid.UUID("5b0e7a52-3f0c-4b8e-9a61-0c6f1f2d7a10")

# A start this far in the past is still "now" (clocks differ); further back, or this far ahead,
# is almost always a wrong year, so it is refused (a past start is allowed for imports).
PAST_GRACE = timedelta(minutes=5)
MAX_AHEAD_YEARS = 2
MAX_AHEAD = timedelta(days=365 * MAX_AHEAD_YEARS + 1)
MAX_REBOOKS = 20  # same booking cancelled and booked again under one key; then ask for a new key

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


def check_start(start: datetime, now: datetime, tz: ZoneInfo, *, allow_past: bool) -> None:
    """Refuse a new booking's start in the past (unless `allow_past`) or years ahead.

    Raises:
        ToolError: the start is out of range (the message gives the current time to fix it with).
    """
    now_text = now.astimezone(tz).isoformat(timespec="minutes")
    if start < now - PAST_GRACE and not allow_past:
        raise ToolError(
            f"start_time {start.isoformat()} is in the past (now is {now_text}); give a future time, "
            "or allow_past=true to record a past appointment (imports)."
        )
    if start > now + MAX_AHEAD:
        raise ToolError(
            f"start_time {start.isoformat()} is more than {MAX_AHEAD_YEARS} years ahead (now is {now_text}); "
            "check the year."
        )


def rebook_key(key: str, n: int) -> str:
    """The key of the n-th booking of the same request after its earlier bookings were cancelled."""
    return f"rebook:{n}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def _request(payload: dict[str, Any]) -> dict[str, Any]:
    """A booking request as the caller made it: its payload without the id its key gave it."""
    return {k: v for k, v in payload.items() if k != "appointment_id"}


async def live_key(rt: Runtime, key: str, request: dict[str, Any]) -> tuple[str, str | None]:
    """(the key to book under, the cancelled appointment it replaces): `key` itself, unless the
    booking made under it with this very request was cancelled; then the same request is a new
    booking, under the next key of its chain. Another request under `key` stays on `key`, so
    queueing it raises the usual IdempotencyError.

    Raises:
        ToolError: the chain is longer than MAX_REBOOKS.
    """
    from crm_mcp.state.models import Appointment  # lazy: SQLAlchemy stays off start-up

    db = await rt.database()
    cancelled: str | None = None
    async with db.sessions() as session:
        for n in range(MAX_REBOOKS + 1):
            candidate = key if n == 0 else rebook_key(key, n)
            op = await _op_for_key(session, candidate)
            if op is None or op.action != "appointment.create" or _request(op.payload or {}) != request:
                return candidate, cancelled
            appt = await session.get(Appointment, op.entity_id)
            if appt is None or appt.status != "cancelled":
                return candidate, cancelled
            cancelled = appt.id
    raise ToolError(
        f"This booking was cancelled and booked again {MAX_REBOOKS} times under one key; "
        "pass a new idempotency_key to book it again."
    )


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
        title="Book an appointment",
        read_only=False,
        destructive=False,
        idempotent=True,
        open_world=True,
    )
    async def create_appointment(
        first_name: Annotated[str, Field(min_length=1, max_length=100)],
        start_time: Annotated[
            SaneDateTime,
            Field(
                description="With an offset, or local to `timezone`.",
                examples=["2030-01-15T15:00:00-05:00"],
            ),
        ],
        email: Annotated[
            str | None,
            Field(
                description="Email or phone is required.",
                pattern=EMAIL_PATTERN,
                max_length=254,
                examples=["jane@example.com"],
            ),
        ] = None,
        phone: Annotated[
            str | None,
            Field(
                description="E.164 preferred.",
                pattern=PHONE_PATTERN,
                max_length=32,
                examples=["+15551234567"],
            ),
        ] = None,
        last_name: Annotated[str | None, Field(max_length=100)] = None,
        duration_minutes: Annotated[int, Field(ge=5, le=480)] = 30,
        timezone: Annotated[
            str,
            Field(max_length=64, description="IANA zone of the appointment.", examples=["America/New_York"]),
        ] = "UTC",
        title: Annotated[str | None, Field(max_length=200)] = None,
        notes: Annotated[str | None, Field(max_length=4000, description="For the CRM booking note.")] = None,
        calendar_id: Annotated[
            str | None,
            Field(max_length=128, description="Default: the connection's calendar."),
        ] = None,
        connection: ConnectionArg = None,
        idempotency_key: IdempotencyArg = None,
        allow_past: Annotated[bool, Field(description="Accept a past start (imports).")] = False,
    ) -> AppointmentResult:
        """Book an appointment locally and queue its delivery to the CRM (contact, event, note, task);
        returns at once. Booking it again after a cancel makes a new booking."""
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
        check_start(start, rt.clock(), tz, allow_past=allow_past)
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

        from crm_mcp.state.models import Appointment

        now = rt.clock()
        appt = Appointment(
            id=str(uuid.uuid5(_NS, f"{conn.name}:{key}")),
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
        # the same request after its booking was cancelled is a new booking (see live_key)
        key, replaces = await live_key(rt, key, _request(create_command(appt).payload()))
        appt.id = appointment_id = str(uuid.uuid5(_NS, f"{conn.name}:{key}"))
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
        if not created:
            msg = "This idempotency key was used before; returning the saved booking."
        elif replaces:
            msg = f"Booked anew (the same booking, {replaces}, was cancelled); delivery is queued."
        else:
            msg = "Booked locally; delivery to the CRM is queued."
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
        confirmation: Annotated[ElicitationResult[Confirmation], Resolve(_ask_to_cancel)],
        appointment_id: Annotated[
            str,
            Field(max_length=64, description="Local id (create_appointment, list_appointments) or CRM id."),
        ],
        action: Annotated[
            Literal["confirm", "cancel", "complete", "update"],
            Field(
                description="cancel adds a follow-up task; complete, a satisfaction task; update "
                "reschedules (start_time, duration_minutes) or edits title/notes."
            ),
        ],
        reason: Annotated[
            str | None, Field(max_length=1000, description="Kept in the CRM task or note.")
        ] = None,
        start_time: Annotated[SaneDateTime | None, Field(description="New start (action=update).")] = None,
        duration_minutes: Annotated[int | None, Field(ge=5, le=480)] = None,
        title: Annotated[str | None, Field(max_length=200)] = None,
        notes: Annotated[str | None, Field(max_length=4000)] = None,
        idempotency_key: IdempotencyArg = None,
        confirm: ConfirmArg = False,
    ) -> AppointmentResult:
        """Confirm, cancel or complete an appointment, or reschedule it (action=update moves its start or
        length, or edits title/notes); the CRM changes are queued. cancel asks the user first."""
        confirmed(confirmation, "update_appointment_status", f"cancel appointment {appointment_id}")
        from crm_mcp.state import refs  # lazy: SQLAlchemy stays off start-up
        from crm_mcp.sync.commands import queue

        db = await rt.database()
        now = rt.clock()
        async with db.begin_write() as session:
            named = await refs.appointments_named(session, appointment_id)
            appt = _one_appointment(
                appointment_id, [a for a in named if current_principal().may_use(a.connection)]
            )
            appointment_id = appt.id
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


def _ask_to_cancel(
    ctx: Context, appointment_id: str, action: str, confirm: bool
) -> Elicit[Confirmation] | Verdict:
    """Cancelling asks the user (elicitation), or needs confirm=true from a client that cannot ask."""
    question = f"Cancel appointment {appointment_id}? The CRM is told too." if action == "cancel" else None
    return ask(ctx, confirm, question)


def _one_appointment(given: str, found: list[Appointment]) -> Appointment:
    """The one appointment an id names.

    Raises:
        ToolError: none, or (a CRM id held by several connections) more than one.
    """
    if not found:
        raise ToolError(
            f"No appointment has the local or CRM id {given!r}; call list_appointments "
            "(e.g. with the contact's email) to find its id."
        )
    if len(found) > 1:
        raise ToolError(
            f"CRM id {given!r} is on {len(found)} connections; pass the local id from list_appointments."
        )
    return found[0]


async def _op_for_key(session: Any, key: str) -> Any:
    from sqlalchemy import select

    from crm_mcp.state.models import SyncOperation

    return (
        await session.execute(select(SyncOperation).where(SyncOperation.idempotency_key == scoped_key(key)))
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

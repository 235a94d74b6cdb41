"""Outbox handlers: how each queued action is delivered to the CRM, effectively once.

Every step is safe to repeat by itself, and checkpoints its result so that a retried delivery
resumes where it stopped. Steps whose API has no natural key (appointment, note, task) read
before they create when an earlier attempt may have written (`ctx.read_before_create`, see
`crm_mcp.sync.context`): the appointment is looked up by contact, calendar and start time; notes
and tasks carry a reference marker (`crm-mcp:<local id>:<purpose>`) and are looked up by it. A
first delivery skips those reads and pays only its writes: one contact upsert carrying the tags
and custom fields, the appointment, the note, the task. Each create is one write, recorded
(checkpointed) as soon as it returns: that is what lets a failed attempt say whether it may
have left a write unrecorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from crm_mcp.connectors.base import (
    Appointment,
    Appointments,
    Connector,
    Contact,
    Contacts,
    Note,
    Notes,
    Tags,
    Task,
    Tasks,
    require,
)
from crm_mcp.errors import RetryableError
from crm_mcp.state import refs
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment as LocalAppointment
from crm_mcp.state.models import SyncOperation
from crm_mcp.sync.commands import AppointmentChange, AppointmentCreate, Person

log = logging.getLogger(__name__)

ConnectorLookup = Callable[[str], Connector]
Handler = Callable[[SyncOperation, Any], Awaitable[dict[str, Any]]]


def marker(local_id: str, purpose: str) -> str:
    return f"crm-mcp:{local_id}:{purpose}"


def _same_instant(a: datetime, b: datetime) -> bool:
    return abs((a - b).total_seconds()) < 1


def _stale_changes(changes: Mapping[str, Any], current: LocalAppointment) -> dict[str, Any]:
    """The queued changes the local record no longer holds, with the value it holds now."""
    stale: dict[str, Any] = {}
    for key in ("status", "start_time", "end_time", "title"):
        if key not in changes:
            continue
        held = getattr(current, key)
        if isinstance(held, datetime):
            wanted = datetime.fromisoformat(changes[key])
            if wanted.tzinfo is None:
                wanted = wanted.replace(tzinfo=UTC)
            if not _same_instant(wanted, held):
                stale[key] = held.isoformat()
        elif held != changes[key]:
            stale[key] = held
    return stale


def _contact_from(person: Person) -> Contact:
    return Contact(**person.model_dump())


async def find_or_create_note(
    connector: Notes, contact_id: str, ref: str, body: str, *, look_first: bool = True
) -> str:
    """The id of the contact's note marked `ref`, created unless `look_first` finds it."""
    for note in await connector.list_notes(contact_id) if look_first else []:
        if ref in note.body and note.id:
            return note.id
    created = await connector.add_note(Note(contact_id=contact_id, body=f"{body}\n\n[{ref}]"))
    assert created.id
    return created.id


async def find_or_create_task(
    connector: Tasks,
    contact_id: str,
    ref: str,
    title: str,
    body: str,
    due: datetime,
    *,
    look_first: bool = True,
) -> str:
    """The id of the contact's task marked `ref`, created unless `look_first` finds it."""
    for task in await connector.list_tasks(contact_id) if look_first else []:
        if task.body and ref in task.body and task.id:
            return task.id
    created = await connector.create_task(
        Task(contact_id=contact_id, title=title, body=f"{body}\n\n[{ref}]", due_date=due)
    )
    assert created.id
    return created.id


async def find_appointment(
    calendar: Appointments, contact_id: str, calendar_id: str | None, start: datetime
) -> Appointment | None:
    """The contact's appointment at this calendar and start time, if the CRM has one (a cancelled
    one is not it: the same booking made again after a cancel is a new appointment)."""
    for a in await calendar.list_contact_appointments(contact_id):
        if a.status == "cancelled":
            continue
        if (a.calendar_id or None) == (calendar_id or None) and _same_instant(a.start_time, start):
            return a
    return None


async def add_tags(connector: Connector, contact_id: str, tags: list[str]) -> list[str]:
    """Tag the contact where the CRM has tags; elsewhere the note or task carries the meaning."""
    if isinstance(connector, Tags):
        return await connector.add_tags(contact_id, tags)
    return []


def build_handlers(
    db: Database, connector_for: ConnectorLookup, now: Callable[[], datetime]
) -> dict[str, Handler]:
    async def load_refs(connection: str, local_id: str) -> dict[str, str]:
        async with db.sessions() as session:
            return await refs.refs_of(session, connection, "appointment", local_id)

    async def local_appointment(local_id: str) -> LocalAppointment | None:
        async with db.sessions() as session:
            return await session.get(LocalAppointment, local_id)

    async def appointment_create(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        cmd = AppointmentCreate.of(op)
        c = connector_for(op.connection)
        done: dict[str, Any] = dict(ctx.progress or {})
        local_id = cmd.appointment_id
        start = datetime.fromisoformat(cmd.start_time)
        end = datetime.fromisoformat(cmd.end_time) if cmd.end_time else start + timedelta(minutes=30)
        if "contact_id" not in done:
            contact = _contact_from(cmd.contact)
            contact.tags = ["crm-mcp", "appointment-booked"]
            contact.custom_fields = {
                "appointment_status": cmd.status,
                "next_appointment_date": start.date().isoformat(),
            }
            saved, _ = await require(c, Contacts).upsert_contact(contact)
            assert saved.id
            done["contact_id"] = saved.id
            await ctx.checkpoint(done)
        contact_id = done["contact_id"]
        if "event_id" not in done:
            calendar = require(c, Appointments)
            match = None
            if ctx.read_before_create:
                match = await find_appointment(calendar, contact_id, cmd.calendar_id, start)
            event = match or await calendar.create_appointment(
                Appointment(
                    calendar_id=cmd.calendar_id,
                    contact_id=contact_id,
                    start_time=start,
                    end_time=end,
                    title=cmd.title,
                    status=cmd.status,  # type: ignore[arg-type]
                )
            )
            assert event.id
            done["event_id"] = event.id
            done["reused_event"] = match is not None
            await ctx.checkpoint(done)
        if "note_id" not in done:
            lines = [
                f"Appointment booked via crm-mcp: {cmd.title or 'appointment'}",
                f"When: {start.isoformat()} to {end.isoformat()} ({cmd.timezone})",
            ]
            if cmd.notes:
                lines.append(f"Details: {cmd.notes}")
            done["note_id"] = await find_or_create_note(
                require(c, Notes),
                contact_id,
                marker(local_id, "booking"),
                "\n".join(lines),
                look_first=ctx.read_before_create,
            )
            await ctx.checkpoint(done)
        if "task_id" not in done:
            due = max(start - timedelta(days=1), now())
            done["task_id"] = await find_or_create_task(
                require(c, Tasks),
                contact_id,
                marker(local_id, "reminder"),
                f"Reminder: {cmd.title or 'appointment'}",
                f"Remind the contact of the appointment at {start.isoformat()}.",
                due,
                look_first=ctx.read_before_create,
            )
            await ctx.checkpoint(done)
        found = {"contact": contact_id, "appointment": done["event_id"]}
        ctx.on_success(refs.link_missing(op.connection, "appointment", local_id, found, now()))
        return done

    async def appointment_status(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        cmd = AppointmentChange.of(op)
        c = connector_for(op.connection)
        local_id = cmd.appointment_id
        linked = await load_refs(op.connection, local_id)
        if "appointment" not in linked:
            raise RetryableError(
                "The appointment has not reached the CRM yet; this change waits for its create operation.",
                provider=c.provider,
            )
        done: dict[str, Any] = dict(ctx.progress or {})
        event_id, contact_id = linked["appointment"], linked["contact"]
        changes: dict[str, Any] = dict(cmd.changes)
        action = cmd.action_name
        # The local record is the truth, not the snapshot queued with this operation: if an inbound
        # CRM change won a conflict, or a later local change followed (and may have been delivered
        # first, this one having failed and waited for its retry), a value here that the record no
        # longer holds is stale, and pushing it would undo the winner. Such values are dropped;
        # a stale status also drops the lost action's tag and task. A later local change delivers
        # itself through its own operation.
        current = await local_appointment(local_id)
        stale = _stale_changes(changes, current) if current is not None else {}
        for key, now_value in stale.items():
            log.info(
                "operation %s: appointment %s has %s=%s locally now; not pushing the stale %s",
                op.id,
                local_id,
                key,
                now_value,
                changes.pop(key),
            )
        superseded = "status" in stale
        if superseded:
            done["superseded_status"] = stale["status"]
        if stale.keys() - {"status"}:
            done["superseded"] = sorted(stale.keys() - {"status"})
        if "updated" not in done:
            update: dict[str, Any] = {}
            if "status" in changes:
                update["status"] = changes["status"]
            for key in ("start_time", "end_time"):
                if key in changes:
                    update[key] = datetime.fromisoformat(changes[key])
            if "title" in changes:
                update["title"] = changes["title"]
            if update:
                await require(c, Appointments).update_appointment(event_id, update)
            values: dict[str, Any] = {}
            if "status" in changes:
                values["appointment_status"] = changes["status"]
            if "start_time" in changes:
                values["next_appointment_date"] = changes["start_time"][:10]
            if values:
                await require(c, Contacts).set_contact_fields(contact_id, values)
            done["updated"] = True
            await ctx.checkpoint(done)
        reason = cmd.reason or "no reason given"
        if not superseded and action == "cancel" and "task_id" not in done:
            await add_tags(c, contact_id, ["appointment-cancelled"])
            done["task_id"] = await find_or_create_task(
                require(c, Tasks),
                contact_id,
                marker(op.id, "follow-up"),
                "Follow up: appointment cancelled",
                f"The appointment was cancelled ({reason}). Offer a new time.",
                now() + timedelta(days=1),
                look_first=ctx.read_before_create,
            )
        elif not superseded and action == "complete" and "task_id" not in done:
            await add_tags(c, contact_id, ["customer"])
            done["task_id"] = await find_or_create_task(
                require(c, Tasks),
                contact_id,
                marker(op.id, "satisfaction"),
                "Satisfaction check",
                "The appointment was completed. Ask the customer how it went.",
                now() + timedelta(days=1),
                look_first=ctx.read_before_create,
            )
        elif action == "update" and ("title" in changes or "notes" in changes) and "note_id" not in done:
            body = "Appointment updated: " + ", ".join(f"{k}={v}" for k, v in changes.items())
            done["note_id"] = await find_or_create_note(
                require(c, Notes),
                contact_id,
                marker(op.id, "update"),
                body,
                look_first=ctx.read_before_create,
            )
        return done

    return {"appointment.create": appointment_create, "appointment.status": appointment_status}

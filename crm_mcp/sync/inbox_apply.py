"""Applying stored webhook events to the local records (leads and appointments).

The inbox (`crm_mcp.sync.inbox`) proves and stores events; the provider's webhook adapter turns
each into neutral `RemoteChange`s; this module decides what each change does to the local records,
the same for every CRM. A contact change updates or creates the lead it refers to; an appointment
change updates, creates or cancels the local appointment. An event older than the CRM state already applied is
skipped (webhooks arrive out of order), and a field changed on both sides — locally, not yet
delivered, and in the CRM — goes through the conflict rules instead of being overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mcp.connectors.registry import webhook_adapter
from crm_mcp.connectors.webhooks import IncomingEvent, RemoteChange, parse_timestamp
from crm_mcp.state import refs
from crm_mcp.state.models import Appointment, InboxEvent, Lead, SyncOperation
from crm_mcp.sync.conflicts import Policy, Resolution, log_conflict, policy_for, resolve

logger = logging.getLogger(__name__)


_LEAD_COLUMNS = ("first_name", "last_name", "email", "phone", "status")
_APPOINTMENT_COLUMNS = ("calendar_id", "start_time", "end_time", "title", "notes", "status")
_UNSYNCED = ("pending", "in_flight", "dead")
# Interim home of an appointment's last applied CRM time, until appointments get a column for it.
_APPOINTMENT_MARK = "crm_updated_at"


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed, with both values and how it was resolved."""

    record_type: str
    record_id: str
    field: str
    local_value: Any
    remote_value: Any
    resolution: Resolution


@dataclass
class Outcome:
    stale: bool = False
    conflicts: list[Conflict] = field(default_factory=list)
    parked: str | None = None  # manual-review note, kept on the inbox event

    def merge(
        self,
        record_type: str,
        record_id: str,
        column: str,
        local_value: Any,
        remote_value: Any,
        local_changed_at: datetime | None,
        remote_ts: datetime,
        policies: Mapping[str, Policy],
    ) -> Any:
        """The value `column` should take: the CRM's, unless a local change is still undelivered."""
        if local_value == remote_value or local_changed_at is None:
            return remote_value
        name = f"{record_type}.{column}"
        res = resolve(
            name, local_value, local_changed_at, remote_value, remote_ts, policy_for(name, dict(policies))
        )
        log_conflict(name, record_id, local_value, remote_value, res)
        self.conflicts.append(Conflict(record_type, record_id, column, local_value, remote_value, res))
        if res.needs_review:
            note = f"needs_review: {name} local={local_value!r} remote={remote_value!r}"
            self.parked = f"{self.parked}; {note}" if self.parked else note
        return res.value


async def apply_event(
    session: AsyncSession,
    ev: InboxEvent,
    *,
    now: datetime,
    policies: Mapping[str, Policy],
    field_ids: Mapping[str, Collection[str]] | None = None,
) -> Outcome:
    """Apply one stored event to the local records (caller commits). Types the engine does not
    apply (and providers without an adapter) are no-ops."""
    adapter = webhook_adapter(ev.provider)
    if adapter is None:
        return Outcome()
    incoming = IncomingEvent(ev.event_id, ev.event_type, dict(ev.payload or {}))
    out = Outcome()
    for change in adapter.changes(incoming, field_ids=field_ids or {}):
        apply = _apply_contact if change.kind == "contact" else _apply_appointment
        done = await apply(session, ev, change, change.occurred_at or ev.received_at, now, policies)
        out.stale |= done.stale
        out.conflicts.extend(done.conflicts)
        if done.parked:
            out.parked = f"{out.parked}; {done.parked}" if out.parked else done.parked
    return out


async def _local_changes(session: AsyncSession, entity_type: str, entity_id: str) -> dict[str, datetime]:
    """Fields with a local change not yet delivered to the CRM, and when the change was made."""
    ops = await session.execute(
        select(SyncOperation).where(
            SyncOperation.entity_type == entity_type,
            SyncOperation.entity_id == entity_id,
            SyncOperation.status.in_(_UNSYNCED),
        )
    )
    out: dict[str, datetime] = {}
    for op in ops.scalars():
        payload: dict[str, Any] = op.payload or {}
        keys = set(payload)
        for nested in ("changes", "contact"):  # appointment.status / contact.upsert payload shapes
            if isinstance(payload.get(nested), dict):
                keys |= set(payload[nested])
        for key in keys:
            out[key] = max(out.get(key, op.created_at), op.created_at)
    return out


async def _lead_for(
    session: AsyncSession, connection: str, contact_id: str, email: str | None
) -> Lead | None:
    ref = await refs.find_local(session, connection, "lead", "contact", contact_id)
    if ref is not None and (lead := await session.get(Lead, ref.local_id)) is not None:
        return lead
    if not email:
        return None
    return (
        await session.execute(
            select(Lead)
            .where(Lead.connection == connection, func.lower(Lead.email) == email.lower())
            .order_by(Lead.created_at)
            .limit(1)
        )
    ).scalar_one_or_none()


async def _apply_contact(
    session: AsyncSession,
    ev: InboxEvent,
    change: RemoteChange,
    ts: datetime,
    now: datetime,
    policies: Mapping[str, Policy],
) -> Outcome:
    contact_id = change.remote_id
    email = change.fields.get("email")
    source = change.fields.get("source")
    remote = {k: change.fields[k] for k in _LEAD_COLUMNS if change.fields.get(k) is not None}
    out = Outcome()
    lead = await _lead_for(session, ev.connection, contact_id, email)
    if lead is None:
        lead = Lead(
            connection=ev.connection,
            source=str(source or ev.provider)[:64],
            data={},
            created_at=now,
            updated_at=now,
            **remote,
        )
        session.add(lead)
        await session.flush()
    else:
        last = parse_timestamp((lead.data or {}).get("crm_updated_at"))
        if last is not None and ts < last:
            logger.info(
                "inbox: skipped %s for lead %s: older than the applied CRM state", ev.event_type, lead.id
            )
            return Outcome(stale=True)
        changes = await _local_changes(session, "lead", lead.id)
        for column, value in remote.items():
            merged = out.merge(
                "lead", lead.id, column, getattr(lead, column), value, changes.get(column), ts, policies
            )
            setattr(lead, column, merged)
        lead.updated_at = now
    await refs.link(session, ev.connection, "lead", lead.id, "contact", contact_id, now)
    lead.data = {**(lead.data or {}), "crm_contact_id": contact_id, "crm_updated_at": ts.isoformat()}
    return out


async def _apply_appointment(
    session: AsyncSession,
    ev: InboxEvent,
    change: RemoteChange,
    ts: datetime,
    now: datetime,
    policies: Mapping[str, Policy],
) -> Outcome:
    remote_id, deleted = change.remote_id, change.deleted
    remote = {k: change.fields[k] for k in _APPOINTMENT_COLUMNS if change.fields.get(k) is not None}
    out = Outcome()
    ref = await refs.find_local(session, ev.connection, "appointment", "appointment", remote_id)
    appt = await session.get(Appointment, ref.local_id) if ref is not None else None
    if appt is None:
        # Created in the CRM (or a Delete that overtook its Create: kept, cancelled, so the late
        # Create is recognised as older and cannot resurrect it).
        if "start_time" not in remote:
            raise ValueError(f"appointment {remote_id} has no readable startTime")
        contact_id = str(change.fields.get("contact_id") or "")
        ref_lead = (
            await refs.find_local(session, ev.connection, "lead", "contact", contact_id)
            if contact_id
            else None
        )
        lead = await session.get(Lead, ref_lead.local_id) if ref_lead is not None else None
        appt = Appointment(
            connection=ev.connection,
            contact_first_name=lead.first_name if lead else None,
            contact_last_name=lead.last_name if lead else None,
            contact_email=lead.email if lead else None,
            contact_phone=lead.phone if lead else None,
            source=ev.provider[:64],
            created_at=now,
            updated_at=now,
            version=1,
            **{"status": "confirmed", **remote},
        )
        session.add(appt)
        await session.flush()
        await refs.link(session, ev.connection, "appointment", appt.id, "appointment", remote_id, now)
        if contact_id:
            await refs.link(session, ev.connection, "appointment", appt.id, "contact", contact_id, now)
    else:
        mark = await _ref_of(session, ev.connection, appt.id)
        if mark is not None and ts < mark:
            logger.info(
                "inbox: skipped %s for appointment %s: older than the applied CRM state",
                ev.event_type,
                appt.id,
            )
            return Outcome(stale=True)
        if deleted:  # a delete says the booking is gone; it is not an edit of its other fields
            remote = {"status": "cancelled"}
        changes = await _local_changes(session, "appointment", appt.id)
        changed = False
        for column, value in remote.items():
            current = getattr(appt, column)
            merged = out.merge(
                "appointment", appt.id, column, current, value, changes.get(column), ts, policies
            )
            if merged != current:
                setattr(appt, column, merged)
                changed = True
        if changed:
            appt.version += 1
            appt.updated_at = now
    mark_value = ts.isoformat()
    await refs.link(
        session, ev.connection, "appointment", appt.id, _APPOINTMENT_MARK, mark_value, now, replace=True
    )
    return out


async def _ref_of(session: AsyncSession, connection: str, appointment_id: str) -> datetime | None:
    """The CRM time of the last event applied to this appointment (None before the first)."""
    mark = (await refs.refs_of(session, connection, "appointment", appointment_id)).get(_APPOINTMENT_MARK)
    return parse_timestamp(mark) if mark else None

"""Find local records for the model: appointments and leads with their CRM ids and sync state.

The model books and qualifies through the local system of record, then needs to find those
records again ("the appointment for jane@example.com") to change them. These queries answer from
the local tables alone (no CRM call), page by keyset cursor in a stable order, and say for each
record whether its delivery is pending, done or dead-lettered, and by which operation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mcp.state.models import Appointment, ExternalRef, Lead, SyncOperation

SyncState = Literal["pending", "delivered", "dead_lettered", "not_synced"]
ERROR_CHARS = 300


class BadCursor(ValueError):
    """A cursor this query did not return (the message says what to do instead)."""


@dataclass(frozen=True)
class Sync:
    """Where a local record's delivery stands: the state, the operation that says so, its error."""

    state: SyncState
    operation_id: str | None = None
    error: str | None = None


@dataclass
class Found:
    """One local record with its CRM ids (remote type -> id) and sync state."""

    record: Any
    crm_ids: dict[str, str] = field(default_factory=dict)
    sync: Sync = Sync("not_synced")


@dataclass
class Page:
    items: list[Found]
    next_cursor: str | None


@dataclass(frozen=True)
class AppointmentFilter:
    contact: str | None = None
    email: str | None = None
    status: str | None = None
    start_from: datetime | None = None
    start_to: datetime | None = None
    connection: str | None = None
    within: frozenset[str] | None = None  # the caller's connections (a tenant's), None: all


@dataclass(frozen=True)
class LeadFilter:
    query: str | None = None
    email: str | None = None
    status: str | None = None
    connection: str | None = None
    within: frozenset[str] | None = None  # the caller's connections (a tenant's), None: all


# -- cursors: opaque, bound to the query they came from ---------------------------------------


def _fingerprint(filters: object) -> str:
    return hashlib.sha256(repr(filters).encode()).hexdigest()[:12]


def encode_cursor(filters: object, sort_value: datetime, record_id: str) -> str:
    raw = json.dumps({"f": _fingerprint(filters), "t": sort_value.isoformat(), "i": record_id})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(filters: object, cursor: str) -> tuple[datetime, str]:
    """The (sort value, id) a cursor continues after.

    Raises:
        BadCursor: the cursor is malformed or was returned for other filters.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        fingerprint, when, record_id = data["f"], datetime.fromisoformat(data["t"]), data["i"]
        if not isinstance(record_id, str):
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(
            "cursor is not one this tool returned; pass next_cursor unchanged or omit it"
        ) from None
    if fingerprint != _fingerprint(filters):
        raise BadCursor("cursor was returned for other filters; repeat the same filters with it, or omit it")
    return when, record_id


# -- queries ------------------------------------------------------------------------------------


def _contains(columns: Sequence[Any], text: str) -> ColumnElement[bool]:
    needle = text.strip().lower()
    return or_(*(func.lower(c).contains(needle, autoescape=True) for c in columns))


async def appointment_page(
    session: AsyncSession, filters: AppointmentFilter, *, limit: int, cursor: str | None
) -> Page:
    """Local appointments matching `filters`, by start time (then id), `limit` at a time.

    Raises:
        BadCursor: a cursor that is not one this query returned.
    """
    q = select(Appointment)
    f = filters
    if f.connection:
        q = q.where(Appointment.connection == f.connection)
    if f.within is not None:
        q = q.where(Appointment.connection.in_(sorted(f.within)))
    if f.email:
        q = q.where(func.lower(Appointment.contact_email) == f.email.strip().lower())
    if f.contact:
        cols = (
            Appointment.contact_first_name,
            Appointment.contact_last_name,
            Appointment.contact_email,
            Appointment.contact_phone,
            func.coalesce(Appointment.contact_first_name, "")
            + " "
            + func.coalesce(Appointment.contact_last_name, ""),
        )
        q = q.where(_contains(cols, f.contact))
    if f.status:
        q = q.where(Appointment.status == f.status)
    if f.start_from:
        q = q.where(Appointment.start_time >= f.start_from)
    if f.start_to:
        q = q.where(Appointment.start_time < f.start_to)
    if cursor:
        after, after_id = decode_cursor(filters, cursor)
        q = q.where(
            or_(
                Appointment.start_time > after,
                and_(Appointment.start_time == after, Appointment.id > after_id),
            )
        )
    rows = list(
        (await session.execute(q.order_by(Appointment.start_time, Appointment.id).limit(limit + 1))).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = await _annotate(session, "appointment", rows)
    last = rows[-1] if more else None
    return Page(items, encode_cursor(filters, last.start_time, last.id) if last else None)


async def lead_page(session: AsyncSession, filters: LeadFilter, *, limit: int, cursor: str | None) -> Page:
    """Local leads matching `filters`, newest first (by creation, then id), `limit` at a time.

    Raises:
        BadCursor: a cursor that is not one this query returned.
    """
    q = select(Lead)
    f = filters
    if f.connection:
        q = q.where(Lead.connection == f.connection)
    if f.within is not None:
        q = q.where(Lead.connection.in_(sorted(f.within)))
    if f.email:
        q = q.where(func.lower(Lead.email) == f.email.strip().lower())
    if f.query:
        full = func.coalesce(Lead.first_name, "") + " " + func.coalesce(Lead.last_name, "")
        q = q.where(_contains((Lead.first_name, Lead.last_name, Lead.email, Lead.phone, full), f.query))
    if f.status:
        q = q.where(Lead.status == f.status)
    if cursor:
        before, before_id = decode_cursor(filters, cursor)
        q = q.where(or_(Lead.created_at < before, and_(Lead.created_at == before, Lead.id < before_id)))
    rows = list(
        (await session.execute(q.order_by(Lead.created_at.desc(), Lead.id.desc()).limit(limit + 1))).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = await _annotate(session, "lead", rows)
    last = rows[-1] if more else None
    return Page(items, encode_cursor(filters, last.created_at, last.id) if last else None)


async def _annotate(session: AsyncSession, local_type: str, rows: Sequence[Any]) -> list[Found]:
    """Attach CRM ids and sync state to a page of local records, in two queries."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    refs: dict[str, dict[str, str]] = defaultdict(dict)
    ref_rows = await session.execute(
        select(
            ExternalRef.connection, ExternalRef.local_id, ExternalRef.remote_type, ExternalRef.remote_id
        ).where(ExternalRef.local_type == local_type, ExternalRef.local_id.in_(ids))
    )
    connection_of = {r.id: r.connection for r in rows}
    for conn, local_id, remote_type, remote_id in ref_rows.all():
        if connection_of.get(local_id) == conn:
            refs[local_id][remote_type] = remote_id
    states = await sync_states(session, local_type, ids)
    out = []
    for r in rows:
        state = states.get(r.id)
        if state is None:  # no operation: it came from the CRM (a webhook or a pull), or never left
            state = Sync("delivered" if refs.get(r.id) else "not_synced")
        out.append(Found(r, dict(refs.get(r.id, {})), state))
    return out


async def sync_states(
    session: AsyncSession, entity_type: str, entity_ids: Collection[str]
) -> dict[str, Sync]:
    """entity id -> its sync state, from every outbox operation that changes it.

    A dead operation wins (something the CRM never got), then one still queued, then the last
    one delivered.
    """
    rows = await session.execute(
        select(SyncOperation.entity_id, SyncOperation.id, SyncOperation.status, SyncOperation.last_error)
        .where(SyncOperation.entity_type == entity_type, SyncOperation.entity_id.in_(list(entity_ids)))
        .order_by(SyncOperation.created_at, SyncOperation.id)
    )
    by_entity: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    for entity_id, op_id, status, error in rows.all():
        by_entity[entity_id].append((op_id, status, error))
    return {entity_id: summarize(ops) for entity_id, ops in by_entity.items()}


def summarize(ops: Sequence[tuple[str, str, str | None]]) -> Sync:
    """The sync state of a record from its operations (id, status, last error), oldest first."""
    for wanted, state in (({"dead"}, "dead_lettered"), ({"pending", "in_flight"}, "pending")):
        matching = [op for op in ops if op[1] in wanted]
        if matching:
            op_id, _status, error = matching[-1]
            return Sync(state, op_id, (error or None) and error[:ERROR_CHARS])  # type: ignore[arg-type]
    if ops:
        return Sync("delivered", ops[-1][0])
    return Sync("not_synced")


async def local_ids_for_contact(
    session: AsyncSession, connection: str, contact_id: str, email: str | None
) -> tuple[str | None, list[str]]:
    """(local lead id, local appointment ids) for a CRM contact: linked by its CRM id, or (before
    delivery links them) by its email."""
    lead_ids = set(
        (
            await session.execute(
                select(ExternalRef.local_id).where(
                    ExternalRef.connection == connection,
                    ExternalRef.local_type == "lead",
                    ExternalRef.remote_type == "contact",
                    ExternalRef.remote_id == contact_id,
                )
            )
        ).scalars()
    )
    linked_appts = select(ExternalRef.local_id).where(
        ExternalRef.connection == connection,
        ExternalRef.local_type == "appointment",
        ExternalRef.remote_type == "contact",
        ExternalRef.remote_id == contact_id,
    )
    appt_match: ColumnElement[bool] = Appointment.id.in_(linked_appts)
    if email:
        appt_match = or_(appt_match, func.lower(Appointment.contact_email) == email.lower())
        if not lead_ids:
            lead_ids = set(
                (
                    await session.execute(
                        select(Lead.id).where(
                            Lead.connection == connection, func.lower(Lead.email) == email.lower()
                        )
                    )
                ).scalars()
            )
    appt_ids = (
        await session.execute(
            select(Appointment.id)
            .where(Appointment.connection == connection, appt_match)
            .order_by(Appointment.start_time.desc(), Appointment.id)
            .limit(50)
        )
    ).scalars()
    return (min(lead_ids) if lead_ids else None), list(appt_ids)

"""External refs: which CRM record (per connection) a local record is, in one repository.

A ref is (connection, local type, local id) -> (remote type, remote id): the appointment a booking
became, the contact a lead is. Handlers, the inbox and validate_sync all ask the same few
questions; they are asked here, once each, instead of as hand-written queries in each module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mcp.state.models import Appointment, ExternalRef

_TABLE = cast(Table, ExternalRef.__table__)
# Prebuilt for the delivery hot path, per dialect: insert the refs a record lacks, keeping the
# ones it has (the unique connection, local type, local id, remote type decides), one statement.
_INSERT_MISSING = {
    "sqlite": sqlite_insert(_TABLE).on_conflict_do_nothing(),
    "postgresql": postgresql_insert(_TABLE).on_conflict_do_nothing(),
}


async def refs_of(session: AsyncSession, connection: str, local_type: str, local_id: str) -> dict[str, str]:
    """remote type -> remote id for one local record."""
    rows = await session.execute(
        select(ExternalRef.remote_type, ExternalRef.remote_id).where(
            ExternalRef.connection == connection,
            ExternalRef.local_type == local_type,
            ExternalRef.local_id == local_id,
        )
    )
    return {remote_type: remote_id for remote_type, remote_id in rows.all()}


async def refs_for(
    session: AsyncSession, connection: str, local_type: str, local_ids: Collection[str]
) -> dict[str, dict[str, ExternalRef]]:
    """local id -> remote type -> ref, for many local records at once."""
    out: dict[str, dict[str, ExternalRef]] = defaultdict(dict)
    rows = await session.execute(
        select(ExternalRef).where(
            ExternalRef.connection == connection,
            ExternalRef.local_type == local_type,
            ExternalRef.local_id.in_(list(local_ids)),
        )
    )
    for ref in rows.scalars():
        out[ref.local_id][ref.remote_type] = ref
    return out


async def remote_ids(session: AsyncSession, connection: str, remote_type: str) -> set[str]:
    """Every remote id of a type this connection has a local record for."""
    rows = await session.execute(
        select(ExternalRef.remote_id).where(
            ExternalRef.connection == connection, ExternalRef.remote_type == remote_type
        )
    )
    return set(rows.scalars())


async def find_local(
    session: AsyncSession, connection: str, local_type: str, remote_type: str, remote_id: str
) -> ExternalRef | None:
    """The ref that names this remote record, if a local record of `local_type` is linked to it."""
    return (
        await session.execute(
            select(ExternalRef)
            .where(
                ExternalRef.connection == connection,
                ExternalRef.local_type == local_type,
                ExternalRef.remote_type == remote_type,
                ExternalRef.remote_id == remote_id,
            )
            .limit(1)
        )
    ).scalar_one_or_none()


async def appointments_named(session: AsyncSession, given: str) -> list[Appointment]:
    """The local appointments an id names: the local id itself, or else the CRM id a local
    appointment was delivered as (one per connection that holds it; normally exactly one)."""
    own = await session.get(Appointment, given)
    if own is not None:
        return [own]
    rows = await session.execute(
        select(Appointment)
        .join(
            ExternalRef,
            (ExternalRef.local_id == Appointment.id) & (ExternalRef.connection == Appointment.connection),
        )
        .where(
            ExternalRef.local_type == "appointment",
            ExternalRef.remote_type == "appointment",
            ExternalRef.remote_id == given,
        )
        .order_by(Appointment.connection)
    )
    return list(rows.scalars())


async def link(
    session: AsyncSession,
    connection: str,
    local_type: str,
    local_id: str,
    remote_type: str,
    remote_id: str,
    now: datetime,
    *,
    replace: bool = False,
) -> None:
    """Record local -> remote of that type (caller commits). An existing one is kept, or with
    `replace` pointed at `remote_id` (a contact merged in the CRM, a newer event mark)."""
    existing = (
        await session.execute(
            select(ExternalRef).where(
                ExternalRef.connection == connection,
                ExternalRef.local_type == local_type,
                ExternalRef.local_id == local_id,
                ExternalRef.remote_type == remote_type,
            )
        )
    ).scalar_one_or_none()
    if existing is None:
        session.add(
            ExternalRef(
                connection=connection,
                local_type=local_type,
                local_id=local_id,
                remote_type=remote_type,
                remote_id=remote_id,
                created_at=now,
            )
        )
    elif replace:
        existing.remote_id = remote_id


def link_missing(
    connection: str, local_type: str, local_id: str, refs: Mapping[str, str], now: datetime
) -> Callable[[Connection], None]:
    """A write (for a handler's `ctx.on_success`, committing with the operation's outcome) that
    inserts the refs of these remote types the record does not have yet, in one statement."""
    key = {"connection": connection, "local_type": local_type, "local_id": local_id}
    rows = [
        {**key, "remote_type": remote_type, "remote_id": remote_id, "created_at": now}
        for remote_type, remote_id in refs.items()
    ]

    def write(conn: Connection) -> None:
        if rows:
            conn.execute(_INSERT_MISSING[conn.dialect.name], rows)

    return write


async def unlink(session: AsyncSession, ref_ids: Collection[int]) -> None:
    """Drop refs whose remote record is gone (a stale mapping)."""
    await session.execute(delete(ExternalRef).where(ExternalRef.id.in_(list(ref_ids))))

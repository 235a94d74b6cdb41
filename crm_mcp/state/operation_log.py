"""What happened to one outbox operation, and id look-ups for completions.

The `sync://operations/{id}` resource shows an operation's attempts (the sync log), its
dead-letter entries and the CRM ids it created; `completion/complete` suggests operation and
dead-letter ids by prefix. Those queries live here, once.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mcp.state.models import DeadLetter, SyncLog, SyncOperation


async def attempts_of(session: AsyncSession, op_id: str, *, limit: int = 50) -> list[SyncLog]:
    """The operation's latest `limit` attempts (every outcome), oldest first."""
    rows = await session.execute(
        select(SyncLog).where(SyncLog.operation_id == op_id).order_by(SyncLog.id.desc()).limit(limit)
    )
    return list(reversed(rows.scalars().all()))


async def dead_letters_of(session: AsyncSession, op_id: str) -> list[DeadLetter]:
    """Every time the operation went dead (a retried one may have several), oldest first."""
    rows = await session.execute(
        select(DeadLetter).where(DeadLetter.operation_id == op_id).order_by(DeadLetter.dead_at)
    )
    return list(rows.scalars())


async def operation_ids(
    session: AsyncSession, prefix: str, *, limit: int, connections: Collection[str] | None = None
) -> list[str]:
    """Operation ids starting with `prefix`, newest first (at most `limit`); with `connections`,
    only those connections' (a tenant's)."""
    query = select(SyncOperation.id).where(SyncOperation.id.startswith(prefix, autoescape=True))
    if connections is not None:
        query = query.where(SyncOperation.connection.in_(list(connections)))
    rows = await session.execute(query.order_by(SyncOperation.created_at.desc()).limit(limit))
    return list(rows.scalars())


async def dead_letter_ids(
    session: AsyncSession, prefix: str, *, limit: int, connections: Collection[str] | None = None
) -> list[str]:
    """Ids of entries still dead (not retried) starting with `prefix`, newest first; with
    `connections`, only those connections'."""
    query = select(DeadLetter.id).where(
        DeadLetter.id.startswith(prefix, autoescape=True), DeadLetter.retried_at.is_(None)
    )
    if connections is not None:
        query = query.where(DeadLetter.connection.in_(list(connections)))
    rows = await session.execute(query.order_by(DeadLetter.dead_at.desc()).limit(limit))
    return list(rows.scalars())

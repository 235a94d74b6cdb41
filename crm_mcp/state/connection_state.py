"""What the server knows about each connection, stored where every process can read it.

Two kinds of rows in `connection_state` (see `models.ConnectionState`):

- ``source="preflight"``: the last connection check (token, tenant, calendar) with each check's
  outcome, when it started failing, and what to do. Written by `crm_mcp.preflight`; read by the
  write tools (their `warning`), health, `crm-mcp connections list` and `crm-mcp status`.
- ``source=<process id>``: one running server's or worker's breaker and rate-limit snapshot per
  connection, republished every few seconds. `crm-mcp status` reads these instead of its own
  (a fresh CLI process has never called the CRM, so its own breakers say nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mcp.state.models import ConnectionState

PREFLIGHT = "preflight"
# a process that stopped without cleaning up: its rows are dropped after this long
STALE_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class StoredCheck:
    """The last preflight of one connection, as stored."""

    connection: str
    provider: str
    ok: bool
    checked_at: datetime
    failing_since: datetime | None
    checks: list[dict[str, Any]]


@dataclass(frozen=True)
class PublishedGuards:
    """One process's breaker / limiter snapshot of one connection."""

    connection: str
    provider: str
    process: str
    seen_at: datetime
    snapshot: dict[str, Any]


async def save_check(
    session: AsyncSession,
    *,
    connection: str,
    provider: str,
    ok: bool,
    checks: list[dict[str, Any]],
    now: datetime,
) -> StoredCheck:
    """Store a preflight result; a failure keeps the time the connection first failed."""
    row = await session.get(ConnectionState, (connection, PREFLIGHT))
    if row is None:
        row = ConnectionState(connection=connection, source=PREFLIGHT, provider=provider, data={})
        session.add(row)
    since = None if ok else (row.since if row.ok is False and row.since is not None else now)
    row.provider, row.ok, row.since, row.updated_at = provider, ok, since, now
    row.data = {"checks": checks}
    return StoredCheck(connection, provider, ok, now, since, checks)


async def load_checks(session: AsyncSession) -> dict[str, StoredCheck]:
    rows = await session.execute(select(ConnectionState).where(ConnectionState.source == PREFLIGHT))
    return {
        r.connection: StoredCheck(
            r.connection,
            r.provider,
            bool(r.ok),
            r.updated_at,
            r.since,
            list((r.data or {}).get("checks", [])),
        )
        for r in rows.scalars()
    }


async def publish_guards(
    session: AsyncSession, *, process: str, snapshots: dict[str, tuple[str, dict[str, Any]]], now: datetime
) -> None:
    """Replace this process's snapshots (connection -> (provider, snapshot)); drop stale ones."""
    await session.execute(delete(ConnectionState).where(ConnectionState.source == process))
    await session.execute(
        delete(ConnectionState).where(
            ConnectionState.source != PREFLIGHT, ConnectionState.updated_at < now - STALE_AFTER
        )
    )
    for name, (provider, snap) in snapshots.items():
        session.add(
            ConnectionState(connection=name, source=process, provider=provider, updated_at=now, data=snap)
        )


async def withdraw_guards(session: AsyncSession, process: str) -> None:
    """A process that stops cleanly takes its snapshots with it."""
    await session.execute(delete(ConnectionState).where(ConnectionState.source == process))


async def load_guards(session: AsyncSession, *, since: datetime) -> dict[str, PublishedGuards]:
    """Per connection, the freshest snapshot published at or after `since` (live processes only)."""
    rows = await session.execute(
        select(ConnectionState)
        .where(ConnectionState.source != PREFLIGHT, ConnectionState.updated_at >= since)
        .order_by(ConnectionState.updated_at)
    )
    out: dict[str, PublishedGuards] = {}
    for r in rows.scalars():  # oldest first: the freshest wins
        out[r.connection] = PublishedGuards(
            r.connection, r.provider, r.source, r.updated_at, dict(r.data or {})
        )
    return out

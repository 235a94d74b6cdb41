"""Fair claiming: one connection's backlog never holds back another connection's next operation.

Runs on SQLite and on PostgreSQL (skipped locally when it is down, required on CI). No timing:
the property is which operations a claim takes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation
from tests.conftest import POSTGRES_URL, require_service

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/fair.db")
        await database.upgrade()
        yield database
        await database.dispose()
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"crm_mcp_fair_{uuid.uuid4().hex[:12]}"
    admin = Database(POSTGRES_URL)
    async with admin.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        await database.upgrade()
        yield database
    finally:
        await database.dispose()
        async with admin.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def backlog(db: Database, connection: str, n: int, *, at: datetime = T0) -> None:
    """`n` operations of `connection`, queued at `at` (oldest first)."""
    items = [
        outbox.NewOperation(
            idempotency_key=f"{connection}-{i}",
            connection=connection,
            action="appointment.create",
            payload={"i": i},
            entity_type="appointment",
            entity_id=f"{connection}-{i}",
        )
        for i in range(n)
    ]
    async with db.begin_write() as s:  # a millisecond apart, so "oldest" is well defined
        for i, item in enumerate(items):
            await outbox.enqueue_many(s, [item], now=at + timedelta(milliseconds=i))


async def claim(db: Database, limit: int, **kw: object) -> list[SyncOperation]:
    return await outbox.claim_due(
        db, worker_id="w", limit=limit, lease=LEASE, now=T0 + timedelta(minutes=5), **kw
    )


def per_connection(ops: list[SyncOperation]) -> Counter[str]:
    return Counter(op.connection for op in ops)


async def test_a_backlog_does_not_hold_back_other_connections(db: Database) -> None:
    """The noisy tenant queued 200 operations first; five quiet ones queued one each later. The
    very next claim serves every quiet tenant (oldest-first order would take 8 noisy ones)."""
    await backlog(db, "noisy", 200, at=T0)
    for q in range(5):
        await backlog(db, f"quiet-{q}", 1, at=T0 + timedelta(minutes=1))
    ops = await claim(db, 8)
    assert per_connection(ops) == {"noisy": 3, **{f"quiet-{q}": 1 for q in range(5)}}


async def test_claims_go_round_robin_and_oldest_first_within_a_connection(db: Database) -> None:
    for i, name in enumerate(["a", "b", "c"]):
        await backlog(db, name, 3, at=T0 + timedelta(seconds=i))
    rounds = [await claim(db, 3) for _ in range(3)]
    for k, ops in enumerate(rounds):
        assert per_connection(ops) == {"a": 1, "b": 1, "c": 1}
        assert sorted(op.idempotency_key for op in ops) == [f"a-{k}", f"b-{k}", f"c-{k}"]
    assert await claim(db, 3) == []


async def test_one_connection_alone_still_fills_the_claim(db: Database) -> None:
    await backlog(db, "only", 20)
    assert len(await claim(db, 8)) == 8


async def test_per_connection_cap_counts_what_is_in_flight(db: Database) -> None:
    await backlog(db, "noisy", 10)
    await backlog(db, "quiet", 3, at=T0 + timedelta(minutes=1))
    first = await claim(db, 8, per_connection=2)
    assert per_connection(first) == {"noisy": 2, "quiet": 2}
    # both connections are at their cap while those leases run: nothing more is taken
    assert await claim(db, 8, per_connection=2) == []
    # one noisy operation finishes: exactly one noisy slot is free again
    done = next(op for op in first if op.connection == "noisy")
    assert await outbox.mark_succeeded(db, done, {}, T0 + timedelta(minutes=5)) is not None
    assert per_connection(await claim(db, 8, per_connection=2)) == {"noisy": 1}


async def test_an_expired_lease_frees_its_slot_under_the_cap(db: Database) -> None:
    await backlog(db, "noisy", 5)
    await claim(db, 8, per_connection=2)
    later = T0 + timedelta(minutes=5) + LEASE * 2  # both leases expired: reclaimable, not running
    again = await outbox.claim_due(db, worker_id="w2", limit=8, lease=LEASE, now=later, per_connection=2)
    assert len(again) == 2 and all(op.lease_owner == "w2" for op in again)


async def test_unfair_order_is_still_available_for_comparison(db: Database) -> None:
    await backlog(db, "noisy", 50)
    await backlog(db, "quiet", 1, at=T0 + timedelta(minutes=1))
    assert per_connection(await claim(db, 8, fair=False)) == {"noisy": 8}


async def test_concurrent_fair_claims_never_share_an_operation(db: Database) -> None:
    for q in range(6):
        await backlog(db, f"t{q}", 10)
    claims = await asyncio.gather(
        *(
            outbox.claim_due(db, worker_id=f"w{i}", limit=7, lease=LEASE, now=T0 + timedelta(minutes=5))
            for i in range(5)
        )
    )
    ids = [op.id for ops in claims for op in ops]
    assert len(ids) == len(set(ids)) == 35
    # together they took the first turns of every tenant before any tenant's later ones
    assert max(per_connection([op for ops in claims for op in ops]).values()) <= 6


async def test_more_connections_than_one_statement_holds(db: Database) -> None:
    """Past 200 connections the candidates are read in several statements; nobody is left out."""
    for c in range(230):
        await backlog(db, f"tenant{c:03d}", 2)
    ops = await outbox.claim_due(db, worker_id="w", limit=230, lease=LEASE, now=T0 + timedelta(minutes=1))
    assert Counter(op.connection for op in ops) == {f"tenant{c:03d}": 1 for c in range(230)}


async def test_a_claim_reads_each_connection_by_index_range(tmp_path: Path) -> None:
    """The claim's cost must not grow with a backlog: SQLite's plans for its statements use the
    claim index per connection (a range, no full scan, no sort of every due operation) and the
    primary key to lock what was picked."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    database = Database(f"sqlite+aiosqlite:///{tmp_path}/plan.db")
    await database.upgrade()
    await backlog(database, "noisy", 300)
    await backlog(database, "quiet", 1)
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        ops = await outbox.claim_due(db=database, worker_id="w", limit=2, lease=LEASE, now=T0)
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    assert {op.connection for op in ops} == {"noisy", "quiet"}
    path = database.sqlite_path
    await database.dispose()
    import sqlite3

    plans = []
    with sqlite3.connect(str(path)) as raw:
        for statement, parameters in statements:
            rows = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()  # type: ignore[arg-type]
            plans.append(" | ".join(str(r[-1]) for r in rows))
    assert len(plans) == 3, plans  # connections, candidates, lock
    heads, candidates, lock = plans
    assert "SCAN sync_operations" not in " ".join(plans), plans
    assert "ix_sync_operations_claim (status=? AND connection>?)" in heads
    assert candidates.count("ix_sync_operations_claim (status=? AND connection=? AND next_attempt_at<?)") == 2
    assert "TEMP B-TREE" not in candidates.split("UNION ALL")[-1]  # each arm read in order
    assert "(id=?)" in lock

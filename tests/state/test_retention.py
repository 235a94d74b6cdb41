"""Retention: succeeded operations, their log and processed webhook events are pruned once old;
dead letters, live operations and recent idempotency keys are kept. Time is a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_mcp.connectors.webhooks import IncomingEvent
from crm_mcp.errors import InvalidRequestError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import DeadLetter, InboxEvent, SyncLog, SyncOperation
from crm_mcp.state.retention import prune
from crm_mcp.sync.inbox import store
from crm_mcp.sync.retention import run_retention_loop

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
DAY = timedelta(days=1)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/retention.db")
    await database.upgrade()
    yield database
    await database.dispose()


async def enqueue(db: Database, key: str, now: datetime) -> None:
    async with db.begin_write() as s:
        await outbox.enqueue(
            s,
            idempotency_key=key,
            connection="ghl",
            action="appointment.create",
            payload={"k": key},
            entity_type="appointment",
            entity_id=key,
            now=now,
        )


async def deliver(db: Database, now: datetime, *, fail: bool = False) -> None:
    """Claim everything due at `now` and record success (or a permanent failure) for each."""
    for op in await outbox.claim_due(db, worker_id="w", limit=1000, lease=LEASE, now=now):
        if fail:
            err = InvalidRequestError("bad field", provider="ghl", status=422)
            await outbox.mark_failed(db, op, err, now, retryable=False, retry_at=None)
        else:
            await outbox.mark_succeeded(db, op, {"remote": op.id}, now)


async def count(db: Database, model: type) -> int:
    async with db.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def keys(db: Database) -> set[str]:
    async with db.sessions() as s:
        return set((await s.execute(select(SyncOperation.idempotency_key))).scalars())


async def test_old_succeeded_operations_and_their_log_go_dead_letters_stay(db: Database) -> None:
    await enqueue(db, "old-ok", T0)
    await enqueue(db, "old-dead", T0)
    await deliver(db, T0)  # both claimed; make one dead first
    async with db.sessions() as s:
        ops = {op.idempotency_key: op for op in (await s.execute(select(SyncOperation))).scalars()}
    assert ops["old-ok"].status == "succeeded" and ops["old-dead"].status == "succeeded"
    # a second pair: one dead for good
    await enqueue(db, "dead", T0)
    await deliver(db, T0, fail=True)
    await enqueue(db, "recent", T0 + 29 * DAY)
    await deliver(db, T0 + 29 * DAY)

    done = await prune(db, now=T0 + 31 * DAY, age=30 * DAY)
    assert (done.operations, done.sync_log) == (2, 2)
    assert await keys(db) == {"dead", "recent"}
    assert await count(db, DeadLetter) == 1
    async with db.sessions() as s:
        logs = list((await s.execute(select(SyncLog.operation_id))).scalars())
    assert len(logs) == 2  # the dead operation's history and the recent success
    assert await prune(db, now=T0 + 31 * DAY, age=30 * DAY) == type(done)()  # nothing more


async def test_a_retried_dead_letter_is_pruned_once_it_succeeds_and_ages(db: Database) -> None:
    await enqueue(db, "k", T0)
    await deliver(db, T0, fail=True)
    await prune(db, now=T0 + 90 * DAY, age=30 * DAY)
    assert await keys(db) == {"k"}  # dead: kept however old
    await outbox.retry_dead(db, all_=True, now=T0 + 90 * DAY)
    await deliver(db, T0 + 90 * DAY)
    await prune(db, now=T0 + 100 * DAY, age=30 * DAY)
    assert await keys(db) == {"k"}  # succeeded only 10 days ago
    done = await prune(db, now=T0 + 121 * DAY, age=30 * DAY)
    assert (done.operations, done.dead_letters, done.sync_log) == (1, 1, 2)
    assert await count(db, DeadLetter) == 0 and await count(db, SyncLog) == 0


async def test_idempotency_keys_are_kept_at_least_72_hours(db: Database) -> None:
    await enqueue(db, "k", T0)
    await deliver(db, T0)
    await prune(db, now=T0 + 71 * timedelta(hours=1), age=timedelta(hours=1))
    assert await keys(db) == {"k"}
    await prune(db, now=T0 + 73 * timedelta(hours=1), age=timedelta(hours=1))
    assert await keys(db) == set()


async def test_processed_inbox_events_are_pruned_unprocessed_kept(db: Database) -> None:
    events = [IncomingEvent(f"evt-{i}", "ContactCreate", {"i": i}) for i in range(3)]
    await store(db, "gohighlevel", "ghl", events, T0)
    async with db.begin_write() as s:
        for row in (await s.execute(select(InboxEvent).where(InboxEvent.event_id != "evt-2"))).scalars():
            row.processed_at = T0
    done = await prune(db, now=T0 + 31 * DAY, age=30 * DAY)
    assert done.inbox_events == 2
    async with db.sessions() as s:
        assert list((await s.execute(select(InboxEvent.event_id))).scalars()) == ["evt-2"]


async def test_tables_stay_bounded_under_continuous_load(db: Database) -> None:
    """Twenty simulated days, 10 bookings every 4 hours, a pruning pass every 12 hours with a
    3-day age: the outbox never holds more than 3 days and 12 hours of operations, it stops
    growing, and small batches get through it all."""
    per_step, step, age, sizes = 10, timedelta(hours=4), 3 * DAY, []
    now = T0
    for n in range(20 * 6):
        async with db.begin_write() as s:
            items = [
                outbox.NewOperation(
                    f"s{n}-{i}", "ghl", "appointment.create", {"i": i}, "appointment", f"{n}-{i}"
                )
                for i in range(per_step)
            ]
            await outbox.enqueue_many(s, items, now=now)
        await deliver(db, now)
        if n % 3 == 2:
            await prune(db, now=now, age=age, batch=7)
            sizes.append(await count(db, SyncOperation))
        now += step
    bound = per_step * (3 * 6 + 3)
    assert max(sizes) <= bound
    assert sizes[-1] == sizes[-10]  # steady state: flat, not growing
    assert await count(db, SyncLog) <= bound


async def test_the_worker_loop_prunes_on_its_schedule(db: Database) -> None:
    await enqueue(db, "k", T0)
    await deliver(db, T0)
    stop = asyncio.Event()
    naps: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:  # after the first pass
            stop.set()

    async def database() -> Database:
        return db

    await run_retention_loop(
        database, days=30, clock=lambda: T0 + 40 * DAY, stop=stop, every=3600, first_after=60, sleep=sleep
    )
    assert naps == [60, 3600]
    assert await keys(db) == set()


async def test_zero_days_keeps_everything(db: Database) -> None:
    async def database() -> Database:
        raise AssertionError("no pass should run")

    await run_retention_loop(database, days=0, clock=lambda: T0)

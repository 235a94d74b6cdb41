"""The outbox worker end to end on SQLite, with injected handlers and a hand-driven clock."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_mcp.errors import (
    CircuitOpenError,
    InvalidRequestError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncLog, SyncOperation, WorkerHeartbeat
from crm_mcp.state.status import sync_status
from crm_mcp.sync.context import HandlerContext
from crm_mcp.sync.worker import OutboxWorker

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/worker.db")
    await database.upgrade()
    yield database
    await database.dispose()


async def enqueue(
    db: Database,
    key: str,
    action: str = "thing.create",
    deadline: timedelta = timedelta(hours=24),
    **payload: Any,
) -> str:
    async with db.begin_write() as s:
        op, _ = await outbox.enqueue(
            s,
            idempotency_key=key,
            connection="fake",
            action=action,
            payload=payload,
            entity_type="thing",
            entity_id=key,
            now=T0,
            deadline=deadline,
        )
    return op.id


async def status_of(db: Database, op_id: str) -> SyncOperation:
    async with db.sessions() as s:
        op = await outbox.get_operation(s, op_id)
    assert op is not None
    return op


def make_worker(db: Database, handlers: dict, clock: Clock, **kw: Any) -> OutboxWorker:
    return OutboxWorker(db, handlers, worker_id="w1", clock=clock, rng=random.Random(3), **kw)


async def test_delivers_everything_once(db: Database) -> None:
    remote: dict[str, dict] = {}

    async def create(op: SyncOperation, ctx: HandlerContext) -> dict:
        remote[op.entity_id] = op.payload
        return {"remote_id": f"r-{op.entity_id}"}

    ids = [await enqueue(db, f"k{i}", n=i) for i in range(10)]
    clock = Clock()
    worker = make_worker(db, {"thing.create": create}, clock, concurrency=3)
    assert await worker.run_until_idle() == 10
    assert await worker.run_until_idle() == 0
    assert remote == {f"k{i}": {"n": i} for i in range(10)}
    for i, op_id in enumerate(ids):
        op = await status_of(db, op_id)
        assert (op.status, op.attempts, op.result) == ("succeeded", 1, {"remote_id": f"r-k{i}"})
    async with db.sessions() as s:
        status = await sync_status(s, now=clock())
        beat = await s.get(WorkerHeartbeat, "w1")
    assert status.totals["succeeded"] == 10 and status.success_rate == 1.0 and status.verdict == "healthy"
    assert beat is not None and beat.processed == 10 and beat.seen_at == T0


async def test_handlers_run_concurrently(db: Database) -> None:
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def slow(op: SyncOperation, ctx: HandlerContext) -> dict:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 4:
            gate.set()
        await asyncio.wait_for(gate.wait(), 5)
        running -= 1
        return {}

    for i in range(8):
        await enqueue(db, f"k{i}")
    worker = make_worker(db, {"thing.create": slow}, Clock(), concurrency=4)
    assert await worker.run_until_idle() == 8
    assert peak == 4


async def test_transient_failures_back_off_then_succeed(db: Database) -> None:
    calls = 0

    async def flaky(op: SyncOperation, ctx: HandlerContext) -> dict:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise UpstreamUnavailableError("503 from CRM", provider="fake", status=503)
        return {"ok": True}

    op_id = await enqueue(db, "k")
    clock = Clock()
    worker = make_worker(db, {"thing.create": flaky}, clock)
    assert await worker.run_until_idle() == 1  # failed once; the retry is in the future
    op = await status_of(db, op_id)
    assert op.status == "pending" and T0 <= op.next_attempt_at <= T0 + timedelta(seconds=1)
    clock.now = op.next_attempt_at
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert op.status == "pending" and op.next_attempt_at <= clock.now + timedelta(seconds=2)
    clock.now = op.next_attempt_at
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.attempts, calls) == ("succeeded", 3, 3)


async def test_gives_up_at_the_deadline_with_history(db: Database) -> None:
    async def down(op: SyncOperation, ctx: HandlerContext) -> dict:
        raise UpstreamUnavailableError("connection reset", provider="fake")

    op_id = await enqueue(db, "k", deadline=timedelta(minutes=30))
    clock = Clock()
    worker = make_worker(db, {"thing.create": down}, clock, backoff_cap=120.0)
    for _ in range(200):
        await worker.run_until_idle()
        op = await status_of(db, op_id)
        if op.status == "dead":
            break
        clock.now = op.next_attempt_at
    assert op.status == "dead"
    assert T0 + timedelta(minutes=25) < clock.now <= T0 + timedelta(minutes=30)
    async with db.sessions() as s:
        (letter,) = await outbox.list_dead_letters(s)
        status = await sync_status(s, now=clock.now)
    assert len(letter.error_history) == op.attempts
    assert {h["error_type"] for h in letter.error_history} == {"UpstreamUnavailableError"}
    assert status.dead_letters == 1 and status.verdict == "degraded"
    assert any("retry_failed_sync" in r for r in status.recommendations)


async def test_permanent_error_is_dead_immediately(db: Database) -> None:
    async def bad(op: SyncOperation, ctx: HandlerContext) -> dict:
        raise InvalidRequestError("email is invalid", provider="fake", status=422)

    op_id = await enqueue(db, "k")
    await make_worker(db, {"thing.create": bad}, Clock()).run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.attempts) == ("dead", 1)


async def test_missing_handler_is_a_dead_letter(db: Database) -> None:
    op_id = await enqueue(db, "k", action="nobody.handles")
    await make_worker(db, {}, Clock()).run_until_idle()
    op = await status_of(db, op_id)
    assert op.status == "dead" and "no handler" in (op.last_error or "")


async def test_unexpected_exception_is_retried_and_logged(
    db: Database, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    async def buggy(op: SyncOperation, ctx: HandlerContext) -> dict:
        raise KeyError("contactId")

    op_id = await enqueue(db, "k")
    with caplog.at_level(logging.ERROR, logger="crm_mcp.sync.worker"):
        await make_worker(db, {"thing.create": buggy}, Clock()).run_until_idle()
    op = await status_of(db, op_id)
    assert op.status == "pending" and op.last_error == "KeyError: 'contactId'"
    assert any(r.exc_info for r in caplog.records)
    assert capsys.readouterr().out == ""  # stdout belongs to the stdio transport


async def test_rate_limit_and_open_circuit_are_honoured(db: Database) -> None:
    errors = [
        RateLimitedError("429", retry_after=30, provider="fake", status=429),
        # `until` is the breaker's monotonic reading: meaningless here; `retry_after` is what counts
        CircuitOpenError("open", until=12345.0, retry_after=60, provider="fake"),
    ]

    async def limited(op: SyncOperation, ctx: HandlerContext) -> dict:
        if errors:
            raise errors.pop(0)
        return {}

    op_id = await enqueue(db, "k")
    clock = Clock()
    worker = make_worker(db, {"thing.create": limited}, clock)
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.attempts, op.next_attempt_at) == ("pending", 0, T0 + timedelta(seconds=30))
    await worker.run_until_idle()  # not due yet
    clock.now = T0 + timedelta(seconds=30)
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.attempts, op.next_attempt_at) == (0, T0 + timedelta(seconds=90))
    clock.now = T0 + timedelta(seconds=90)
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.attempts) == ("succeeded", 1)
    async with db.sessions() as s:
        outcomes = (await s.execute(select(SyncLog.outcome).order_by(SyncLog.id))).scalars().all()
    assert outcomes == ["rescheduled", "rescheduled", "success"]


async def test_checkpoint_lets_a_retry_resume(db: Database) -> None:
    created_contacts: list[str] = []
    crash = True

    async def two_steps(op: SyncOperation, ctx: HandlerContext) -> dict:
        nonlocal crash
        if "contact_id" not in ctx.progress:
            created_contacts.append(op.entity_id)
            await ctx.checkpoint({"contact_id": "c-1"})
        if crash:
            crash = False
            raise UpstreamUnavailableError("timeout creating the appointment")
        return {"appointment_id": "e-1"}

    op_id = await enqueue(db, "k")
    clock = Clock()
    worker = make_worker(db, {"thing.create": two_steps}, clock)
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.result) == ("pending", {"contact_id": "c-1"})  # stored with the failure
    clock.now = op.next_attempt_at
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert op.status == "succeeded"
    assert op.result == {"contact_id": "c-1", "appointment_id": "e-1"}
    assert created_contacts == ["k"]  # the contact step ran once


async def test_crashed_worker_lease_expires_and_work_is_redone(db: Database) -> None:
    op_id = await enqueue(db, "k")
    clock = Clock()
    # a worker claims and dies without finishing
    await outbox.claim_due(db, worker_id="dead-worker", limit=1, lease=timedelta(seconds=60), now=T0)

    async def ok(op: SyncOperation, ctx: HandlerContext) -> dict:
        return {"by": "w1"}

    worker = make_worker(db, {"thing.create": ok}, clock)
    assert await worker.run_until_idle() == 0
    clock.advance(seconds=61)
    assert await worker.run_until_idle() == 1
    op = await status_of(db, op_id)
    assert (op.status, op.attempts, op.result) == ("succeeded", 2, {"by": "w1"})


async def test_lost_lease_stops_the_handler(db: Database) -> None:
    op_id = await enqueue(db, "k")
    clock = Clock()

    async def slow(op: SyncOperation, ctx: HandlerContext) -> dict:
        clock.advance(seconds=120)  # we stalled past our lease...
        await outbox.claim_due(db, worker_id="w2", limit=1, lease=timedelta(seconds=60), now=clock())
        await ctx.checkpoint({"step": 1})  # ...so this must refuse
        return {"should": "not happen"}

    await make_worker(db, {"thing.create": slow}, clock).run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.lease_owner, op.result) == ("in_flight", "w2", {})


async def test_run_forever_stops_and_clears_its_heartbeat(db: Database) -> None:
    done = asyncio.Event()

    async def ok(op: SyncOperation, ctx: HandlerContext) -> dict:
        done.set()
        return {}

    naps: list[float] = []
    napped = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        naps.append(seconds)
        napped.set()
        await asyncio.sleep(0)

    await enqueue(db, "k")
    stop = asyncio.Event()
    worker = make_worker(db, {"thing.create": ok}, Clock(), sleep=fake_sleep, poll_interval=0.25)
    task = asyncio.create_task(worker.run_forever(stop))
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.wait_for(napped.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert naps[0] == 0.25
    async with db.sessions() as s:
        assert await s.get(WorkerHeartbeat, "w1") is None


async def test_max_attempts_spends_the_retry_budget(db: Database) -> None:
    async def down(op: SyncOperation, ctx: HandlerContext) -> dict:
        raise UpstreamUnavailableError("502")

    op_id = await enqueue(db, "k")
    clock = Clock()
    worker = make_worker(db, {"thing.create": down}, clock, max_attempts=2)
    await worker.run_until_idle()
    clock.now = (await status_of(db, op_id)).next_attempt_at
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.attempts) == ("dead", 2)


async def test_a_starting_worker_prunes_heartbeats_dead_for_a_day(db: Database) -> None:
    """SIGKILLed workers cannot remove their heartbeat; a new worker drops those not seen for a
    day, and keeps recent ones (shown as not alive) so a crash stays visible in the status."""
    async with db.begin_write() as s:
        for worker_id, age in (("old", timedelta(days=2)), ("recent", timedelta(minutes=10))):
            s.add(WorkerHeartbeat(worker_id=worker_id, started_at=T0 - age, seen_at=T0 - age, pid=1))
    await make_worker(db, {}, Clock()).run_until_idle()
    async with db.sessions() as s:
        ids = set((await s.execute(select(WorkerHeartbeat.worker_id))).scalars())
    assert ids == {"recent", "w1"}

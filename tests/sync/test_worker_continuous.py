"""The continuous delivery loop (`drain`, `run_forever`) and the outbox's conditional-UPDATE writes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncLog, SyncOperation
from crm_mcp.sync.context import HandlerContext
from crm_mcp.sync.worker import OutboxWorker

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/continuous.db")
    await database.upgrade()
    yield database
    await database.dispose()


async def enqueue(db: Database, key: str) -> str:
    async with db.begin_write() as s:
        op, _ = await outbox.enqueue(
            s,
            idempotency_key=key,
            connection="fake",
            action="thing.create",
            payload={"key": key},
            entity_type="thing",
            entity_id=key,
            now=T0,
        )
    return op.id


def make_worker(db: Database, handlers: dict, clock: Clock, **kw: Any) -> OutboxWorker:
    return OutboxWorker(db, handlers, worker_id="w1", clock=clock, rng=random.Random(3), **kw)


async def test_drain_claims_as_soon_as_a_slot_frees(db: Database) -> None:
    """With two slots, the third operation starts while the second is still running."""
    gates = {f"k{i}": asyncio.Event() for i in range(4)}
    started: list[str] = []
    running: set[str] = set()
    most = 0

    async def handler(op: SyncOperation, ctx: HandlerContext) -> dict:
        nonlocal most
        key = op.payload["key"]
        started.append(key)
        running.add(key)
        most = max(most, len(running))
        await ctx.checkpoint({"step": key})
        await gates[key].wait()
        running.discard(key)
        return {"done": key}

    for key in gates:
        await enqueue(db, key)
    changes: list[int] = []
    worker = make_worker(
        db, {"thing.create": handler}, Clock(), concurrency=2, on_change=lambda: changes.append(1)
    )
    task = asyncio.create_task(worker.drain())

    async def until(cond: Any) -> None:
        for _ in range(500):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    await until(lambda: started == ["k0", "k1"])
    gates["k0"].set()
    await until(lambda: len(started) == 3)
    assert "k1" in running  # the batch was not waited for
    for gate in gates.values():
        gate.set()
    assert await asyncio.wait_for(task, 5) == 4
    assert most == 2 and sorted(started) == sorted(gates) and changes
    assert worker.processed == 4
    async with db.sessions() as s:
        ops = list((await s.execute(select(SyncOperation))).scalars())
        logs = list((await s.execute(select(SyncLog))).scalars())
    assert {op.status for op in ops} == {"succeeded"}
    assert all(op.result == {"step": op.payload["key"], "done": op.payload["key"]} for op in ops)
    assert all(op.lease_owner is None and op.lease_until is None for op in ops)
    assert sorted((log.outcome, log.attempt) for log in logs) == [("success", 1)] * 4


async def test_a_running_operation_whose_lease_expired_is_not_started_twice(db: Database) -> None:
    clock = Clock()
    slow_gate = asyncio.Event()
    calls: list[str] = []

    async def handler(op: SyncOperation, ctx: HandlerContext) -> dict:
        key = op.payload["key"]
        calls.append(key)
        if key == "slow":
            await slow_gate.wait()
        else:
            clock.now += LEASE * 2  # the slow one's lease runs out meanwhile
        return {}

    await enqueue(db, "slow")
    await enqueue(db, "fast")
    worker = make_worker(db, {"thing.create": handler}, clock, concurrency=2, lease=LEASE)
    task = asyncio.create_task(worker.drain())
    for _ in range(200):
        if len(calls) == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # "fast" finished and freed a slot; the worker claimed again
    slow_gate.set()
    assert await asyncio.wait_for(task, 5) == 2
    assert sorted(calls) == ["fast", "slow"]


async def test_run_forever_finishes_what_is_in_flight_on_stop(db: Database) -> None:
    gate = asyncio.Event()
    started = asyncio.Event()

    async def handler(op: SyncOperation, ctx: HandlerContext) -> dict:
        started.set()
        await gate.wait()
        return {"ok": True}

    op_id = await enqueue(db, "k")
    stop = asyncio.Event()
    worker = make_worker(db, {"thing.create": handler}, Clock(), poll_interval=0.01)
    task = asyncio.create_task(worker.run_forever(stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    await asyncio.sleep(0.05)
    assert not task.done()
    gate.set()
    await asyncio.wait_for(task, 5)
    async with db.sessions() as s:
        op = await s.get(SyncOperation, op_id)
    assert op is not None and op.status == "succeeded" and op.result == {"ok": True}


async def test_claim_due_excludes_what_the_caller_still_runs(db: Database) -> None:
    a, b = await enqueue(db, "a"), await enqueue(db, "b")
    await outbox.claim_due(db, worker_id="w", limit=2, lease=LEASE, now=T0)
    later = T0 + LEASE * 2  # both leases expired
    again = await outbox.claim_due(db, worker_id="w", limit=2, lease=LEASE, now=later, exclude={a})
    assert [op.id for op in again] == [b]


async def test_checkpoint_with_known_progress_is_conditional_on_the_lease(db: Database) -> None:
    op_id = await enqueue(db, "k")
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    progress = await outbox.checkpoint(
        db, op_id, {"a": 1}, worker_id="w", lease_until=T0 + LEASE * 3, progress={}
    )
    progress = await outbox.checkpoint(db, op_id, {"b": 2}, worker_id="w", progress=progress)
    assert progress == {"a": 1, "b": 2}
    async with db.sessions() as s:
        row = await s.get(SyncOperation, op_id)
    assert row is not None and row.result == {"a": 1, "b": 2} and row.lease_until == T0 + LEASE * 3
    with pytest.raises(outbox.LeaseLostError):
        await outbox.checkpoint(db, op_id, {"c": 3}, worker_id="other", progress=progress)
    # Reclaimed by another worker after the lease ran out: our conditional writes change nothing.
    (stolen,) = await outbox.claim_due(db, worker_id="w2", limit=1, lease=LEASE, now=T0 + LEASE * 4)
    with pytest.raises(outbox.LeaseLostError):
        await outbox.checkpoint(db, op_id, {"c": 3}, worker_id="w", progress=progress)
    assert await outbox.mark_succeeded(db, claimed, {"d": 4}, T0, 5, progress=progress) is None
    async with db.sessions() as s:
        row = await s.get(SyncOperation, op_id)
        logs = list((await s.execute(select(SyncLog))).scalars())
    assert row is not None and (row.status, row.lease_owner, row.result) == (
        "in_flight",
        "w2",
        {"a": 1, "b": 2},
    )
    assert logs == []
    done = await outbox.mark_succeeded(db, stolen, {"d": 4}, T0, 7, progress={"a": 1, "b": 2})
    assert done is stolen and done.status == "succeeded"
    async with db.sessions() as s:
        row = await s.get(SyncOperation, op_id)
        logs = list((await s.execute(select(SyncLog))).scalars())
    assert row is not None and (row.status, row.lease_owner, row.lease_until) == ("succeeded", None, None)
    assert row.result == {"a": 1, "b": 2, "d": 4}
    assert [(log.outcome, log.attempt, log.duration_ms) for log in logs] == [("success", 2, 7)]


@pytest.mark.parametrize(("concurrency", "prefetch"), [(1, 0), (4, 0), (4, 1), (4, 3)])
async def test_drain_delivers_everything_while_slots_free_during_claims(
    db: Database, concurrency: int, prefetch: int
) -> None:
    """Handlers of uneven length finish while claims are being read, so how many slots are free
    changes under a claim; a claim that fills fewer slots than were free *when it ends* must not be
    taken for "nothing due" (that stopped a drain early), and no slot may ever run two at once."""
    rng = random.Random(concurrency * 10 + prefetch)
    active: set[str] = set()
    most = 0
    seen: list[str] = []

    async def uneven(op: SyncOperation, ctx: HandlerContext) -> dict:
        nonlocal most
        active.add(op.id)
        most = max(most, len(active))
        await asyncio.sleep(rng.choice([0, 0, 0.001, 0.003, 0.01]))
        active.discard(op.id)
        seen.append(op.id)
        return {}

    ids = [await enqueue(db, f"k{i}") for i in range(30)]
    worker = make_worker(db, {"thing.create": uneven}, Clock(), concurrency=concurrency, prefetch=prefetch)
    assert await asyncio.wait_for(worker.drain(), 30) == 30
    assert sorted(seen) == sorted(ids) and most <= concurrency
    async with db.sessions() as s:
        statuses = (await s.execute(select(SyncOperation.status))).scalars().all()
    assert set(statuses) == {"succeeded"}


async def test_a_finished_handler_frees_its_slot_before_its_outcome_is_written(db: Database) -> None:
    """The outcome write holds no CRM slot: with one slot, the second operation's handler starts
    while the first one's success is still being recorded."""
    started: list[str] = []
    recording = asyncio.Event()
    release = asyncio.Event()
    original = outbox.mark_succeeded

    async def slow_success(*args: Any, **kwargs: Any) -> Any:
        recording.set()
        await release.wait()
        return await original(*args, **kwargs)

    async def handler(op: SyncOperation, ctx: HandlerContext) -> dict:
        started.append(op.payload["key"])
        if len(started) == 2:
            release.set()  # only reachable if the slot was freed before the write finished
        return {}

    await enqueue(db, "a")
    await enqueue(db, "b")
    worker = make_worker(db, {"thing.create": handler}, Clock(), concurrency=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outbox, "mark_succeeded", slow_success)
        assert await asyncio.wait_for(worker.drain(), 10) == 2
    assert started == ["a", "b"]


async def test_a_prefetched_operation_renews_its_lease_before_it_starts(db: Database) -> None:
    """Claimed ahead, an operation waits for a slot; past half its lease it is renewed before its
    handler runs, so another worker cannot take it while we work on it."""
    clock = Clock()
    leases: dict[str, datetime | None] = {}

    async def slow(op: SyncOperation, ctx: HandlerContext) -> dict:
        async with db.sessions() as s:
            leases[op.payload["key"]] = (await s.get(SyncOperation, op.id)).lease_until  # type: ignore[union-attr]
        clock.now += timedelta(seconds=40)  # the slot is busy for 40 s of a 60 s lease
        return {}

    await enqueue(db, "a")
    await enqueue(db, "b")
    worker = make_worker(db, {"thing.create": slow}, clock, concurrency=1, prefetch=1, lease=LEASE)
    assert await worker.drain() == 2
    assert leases["a"] == T0 + LEASE  # started at once: its claim's lease
    assert leases["b"] == T0 + timedelta(seconds=40) + LEASE  # waited 40 s: renewed on start


async def test_a_prefetched_operation_reclaimed_meanwhile_is_not_run(db: Database) -> None:
    clock = Clock()
    ran: list[str] = []

    async def stalls(op: SyncOperation, ctx: HandlerContext) -> dict:
        ran.append(op.payload["key"])
        if op.payload["key"] == "a":
            clock.now += timedelta(seconds=90)  # b's lease runs out while it waits; another takes it
            await outbox.claim_due(db, worker_id="w2", limit=5, lease=LEASE, now=clock())
        return {}

    await enqueue(db, "a")
    b_id = await enqueue(db, "b")
    worker = make_worker(db, {"thing.create": stalls}, clock, concurrency=1, prefetch=1, lease=LEASE)
    await worker.drain()
    assert ran == ["a"]  # b is w2's now: starting it too could book it twice
    async with db.sessions() as s:
        b = await s.get(SyncOperation, b_id)
    assert b is not None and (b.status, b.lease_owner) == ("in_flight", "w2")


async def test_claims_are_batched_not_one_per_operation(db: Database) -> None:
    """A claim is a write transaction whatever it takes: with slots freeing one at a time, the
    loop claims once half the prefetch is wanted (or a slot would idle), so claims take several
    operations each instead of one per finished operation."""
    claims: list[int] = []
    original = outbox.claim_due

    async def counted(*args: Any, **kwargs: Any) -> Any:
        ops = await original(*args, **kwargs)
        claims.append(len(ops))
        return ops

    finished = asyncio.Semaphore(0)

    async def one_at_a_time(op: SyncOperation, ctx: HandlerContext) -> dict:
        await finished.acquire()  # released one by one below, with time to claim in between
        return {}

    async def release_one_by_one() -> None:
        for _ in range(64):
            await asyncio.sleep(0.005)
            finished.release()

    for i in range(64):
        await enqueue(db, f"k{i}")
    worker = make_worker(db, {"thing.create": one_at_a_time}, Clock(), concurrency=4, prefetch=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outbox, "claim_due", counted)
        releaser = asyncio.ensure_future(release_one_by_one())
        assert await asyncio.wait_for(worker.drain(), 30) == 64
        await releaser
    taken = [n for n in claims if n]
    assert sum(taken) == 64
    assert len(taken) <= 64 // 2 + 2, claims  # one claim per operation before

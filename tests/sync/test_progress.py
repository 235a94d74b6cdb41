"""Handler progress is written behind: with the attempt's outcome, or when the lease needs renewing.

A step's CRM requests cost no database write of their own; what makes a step safe to repeat after
a crash is the step itself (upsert or read-before-create), which tests/sync/test_crash.py proves
against the sandbox with SIGKILLs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

import anyio
import pytest
from sqlalchemy import Connection, Table, insert, select

from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import ExternalRef, SyncOperation, WorkerHeartbeat
from crm_mcp.sync.context import HandlerContext
from crm_mcp.sync.worker import OutboxWorker, utcnow
from tests.sync.test_worker import T0, Clock, db, enqueue, make_worker, status_of

pytestmark = pytest.mark.anyio
__all__ = ["db"]  # the fixture, re-used

REFS = cast(Table, ExternalRef.__table__)


async def stored_result(db: Database, op_id: str) -> dict[str, Any]:
    return dict((await status_of(db, op_id)).result or {})


async def test_checkpoints_are_stored_with_the_success_not_one_write_each(db: Database) -> None:
    seen_while_running: list[dict[str, Any]] = []

    async def three_steps(op: SyncOperation, ctx: HandlerContext) -> dict:
        for step in ("contact_id", "event_id", "note_id"):
            await ctx.checkpoint({step: f"{step}-1"})
            seen_while_running.append(await stored_result(db, op.id))
        return {"task_id": "t-1"}

    op_id = await enqueue(db, "k")
    await make_worker(db, {"thing.create": three_steps}, Clock()).run_until_idle()
    assert seen_while_running == [{}, {}, {}]  # nothing written while the steps ran
    op = await status_of(db, op_id)
    assert op.status == "succeeded"
    assert op.result == {
        "contact_id": "contact_id-1",
        "event_id": "event_id-1",
        "note_id": "note_id-1",
        "task_id": "t-1",
    }


async def test_a_checkpoint_past_half_the_lease_writes_and_renews_it(db: Database) -> None:
    clock = Clock()
    seen: list[tuple[dict[str, Any], Any]] = []

    async def slow(op: SyncOperation, ctx: HandlerContext) -> dict:
        await ctx.checkpoint({"a": 1})  # early: nothing written
        seen.append((await stored_result(db, op.id), (await status_of(db, op.id)).lease_until))
        clock.advance(seconds=31)  # past half of the 60 s lease
        await ctx.checkpoint({"b": 2})
        seen.append((await stored_result(db, op.id), (await status_of(db, op.id)).lease_until))
        clock.advance(seconds=20)  # within half of the renewed lease: nothing written
        await ctx.checkpoint({"c": 3})
        seen.append((await stored_result(db, op.id), (await status_of(db, op.id)).lease_until))
        return {}

    op_id = await enqueue(db, "k")
    start = clock()
    await make_worker(db, {"thing.create": slow}, clock, lease=timedelta(seconds=60)).run_until_idle()
    assert [result for result, _ in seen] == [{}, {"a": 1, "b": 2}, {"a": 1, "b": 2}]
    leases = [lease.replace(tzinfo=start.tzinfo) for _, lease in seen]
    assert leases[0] == start + timedelta(seconds=60)
    assert leases[1] == leases[2] == start + timedelta(seconds=31 + 60)
    assert (await stored_result(db, op_id)) == {"a": 1, "b": 2, "c": 3}


def ref_write(local_id: str) -> Any:
    def write(conn: Connection) -> None:
        conn.execute(
            insert(REFS).values(
                connection="fake",
                local_type="thing",
                local_id=local_id,
                remote_type="thing",
                remote_id=f"r-{local_id}",
                created_at=T0,
            )
        )

    return write


async def refs(db: Database) -> list[str]:
    async with db.sessions() as s:
        return list((await s.execute(select(ExternalRef.local_id))).scalars())


async def test_success_writes_commit_with_the_success(db: Database) -> None:
    async def create(op: SyncOperation, ctx: HandlerContext) -> dict:
        ctx.on_success(ref_write(op.entity_id))
        return {}

    await enqueue(db, "k")
    await make_worker(db, {"thing.create": create}, Clock()).run_until_idle()
    assert await refs(db) == ["k"]


async def test_success_writes_are_dropped_with_a_lost_lease(db: Database) -> None:
    clock = Clock()

    async def stalled(op: SyncOperation, ctx: HandlerContext) -> dict:
        ctx.on_success(ref_write(op.entity_id))
        clock.advance(seconds=120)  # stalled past the lease without a checkpoint, and reclaimed
        await outbox.claim_due(db, worker_id="w2", limit=1, lease=timedelta(seconds=60), now=clock())
        return {}

    op_id = await enqueue(db, "k")
    await make_worker(db, {"thing.create": stalled}, clock).run_until_idle()
    assert await refs(db) == []  # the success was refused, and its writes with it
    op = await status_of(db, op_id)
    assert (op.status, op.lease_owner) == ("in_flight", "w2")


async def test_a_failing_success_write_is_a_failed_attempt_with_its_progress(db: Database) -> None:
    """The success transaction carries the handler's own writes; if it fails, the attempt counts as
    failed (backoff, then the dead-letter queue), not as an operation left leased to run again."""
    runs = 0

    def broken(conn: Connection) -> None:
        raise RuntimeError("refs table is gone")

    async def create(op: SyncOperation, ctx: HandlerContext) -> dict:
        nonlocal runs
        runs += 1
        await ctx.checkpoint({"contact_id": "c-1"})
        ctx.on_success(broken)
        return {}

    op_id = await enqueue(db, "k")
    clock = Clock()
    worker = make_worker(db, {"thing.create": create}, clock, max_attempts=2)
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.result, op.lease_owner) == ("pending", {"contact_id": "c-1"}, None)
    assert "refs table is gone" in (op.last_error or "")
    clock.now = op.next_attempt_at
    await worker.run_until_idle()
    assert (await status_of(db, op_id)).status == "dead" and runs == 2


async def test_the_lease_is_kept_alive_through_a_slow_step(db: Database) -> None:
    """Real time: a 1.5 s lease, a step that takes 2 s. Without renewal another worker could claim
    the operation at 1.7 s and run it alongside; renewed every third of the lease, it cannot."""
    lease = timedelta(seconds=1.5)
    stolen: list[int] = []

    async def slow(op: SyncOperation, ctx: HandlerContext) -> dict:
        await asyncio.sleep(1.7)
        other = await outbox.claim_due(db, worker_id="w2", limit=5, lease=lease, now=utcnow())
        stolen.append(len(other))
        await asyncio.sleep(0.3)
        await ctx.checkpoint({"step": 1})  # still ours
        return {}

    op_id = await enqueue(db, "k")
    worker = OutboxWorker(db, {"thing.create": slow}, worker_id="w1", lease=lease, clock=utcnow)
    assert await worker.run_until_idle() == 1
    assert stolen == [0]
    op = await status_of(db, op_id)
    assert (op.status, op.attempts, op.result) == ("succeeded", 1, {"step": 1})


@pytest.mark.parametrize("how", ["asyncio", "anyio"])
async def test_a_stopped_worker_hands_its_operations_back(db: Database, how: str) -> None:
    """Cancelled (how `serve` stops when its session ends; anyio's cancel scopes cancel every await
    again), the worker stores the running operation's progress and makes it due at once, and hands
    back the operations it had claimed ahead, instead of leaving them all leased."""
    started = asyncio.Event()

    async def hangs(op: SyncOperation, ctx: HandlerContext) -> dict:
        await ctx.checkpoint({"contact_id": f"c-{op.payload['n']}"})
        started.set()
        await asyncio.Event().wait()
        return {}

    ids = [await enqueue(db, f"k{i}", n=i) for i in range(3)]
    clock = Clock()
    worker = make_worker(db, {"thing.create": hangs}, clock, concurrency=1, prefetch=2)
    if how == "asyncio":
        task = asyncio.ensure_future(worker.run_forever())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run_forever)
            await asyncio.wait_for(started.wait(), 5)
            tg.cancel_scope.cancel()
    ops = [await status_of(db, op_id) for op_id in ids]
    assert [(op.status, op.lease_owner, op.next_attempt_at) for op in ops] == [("pending", None, clock())] * 3
    # our own stop is not a failed attempt: each attempt is given back
    assert [(op.attempts, op.result) for op in ops] == [(0, {"contact_id": "c-0"}), (0, {}), (0, {})]
    async with db.sessions() as s:
        assert (await s.execute(select(WorkerHeartbeat))).first() is None  # and it said goodbye

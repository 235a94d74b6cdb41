"""Handler progress is written behind: with the attempt's outcome, or when the lease needs renewing.

A step's CRM requests cost no database write of their own; what makes a step safe to repeat after
a crash is the step itself (upsert or read-before-create), which tests/sync/test_crash.py proves
against the sandbox with SIGKILLs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Connection, Table, insert, select

from crm_mcp.errors import UpstreamUnavailableError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import ExternalRef, SyncOperation
from crm_mcp.sync.worker import HandlerContext
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


async def test_a_failure_stores_the_progress_so_the_retry_resumes(db: Database) -> None:
    calls: list[str] = []

    async def flaky(op: SyncOperation, ctx: HandlerContext) -> dict:
        if "contact_id" not in ctx.progress:
            calls.append("contact")
            await ctx.checkpoint({"contact_id": "c-1"})
        calls.append("event")
        if len(calls) == 2:
            raise UpstreamUnavailableError("502 creating the appointment")
        return {"event_id": "e-1"}

    op_id = await enqueue(db, "k")
    clock = Clock()
    worker = make_worker(db, {"thing.create": flaky}, clock)
    await worker.run_until_idle()
    op = await status_of(db, op_id)
    assert (op.status, op.result) == ("pending", {"contact_id": "c-1"})
    clock.now = op.next_attempt_at
    await worker.run_until_idle()
    assert calls == ["contact", "event", "event"]
    assert (await stored_result(db, op_id)) == {"contact_id": "c-1", "event_id": "e-1"}


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

"""`sync_operations.read_before_create`: who sets it, in which write, and that nothing resets it.

The flag decides whether an attempt looks for its creates in the CRM first. It must be durable
before the attempt's first request and only ever go from False to True, whatever else happens to
the operation (attempts given back, reset by a retried dead letter).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from crm_mcp.errors import InvalidRequestError, RateLimitedError, UpstreamUnavailableError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation
from tests.state.test_postgres import PG_URL, _reachable

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """Both backends (the claim, release and failure writes differ); PostgreSQL in a schema of its
    own, skipped when it is not running (as in test_postgres)."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
        await database.upgrade()
        yield database
        await database.dispose()
        return
    problem = await _reachable()
    if problem is not None:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({problem})")
    schema = f"crm_mcp_test_{uuid.uuid4().hex[:12]}"
    admin = Database(PG_URL)
    async with admin.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(PG_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        await database.upgrade()
        yield database
    finally:
        await database.dispose()
        async with admin.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def add(db: Database, key: str, *, fresh: bool) -> SyncOperation:
    async with db.begin_write() as s:
        op, created = await outbox.enqueue(
            s,
            idempotency_key=key,
            connection="ghl",
            action="appointment.create",
            payload={"n": key},
            entity_type="appointment",
            entity_id=key,
            now=T0,
            fresh=fresh,
        )
        assert created
    return op


async def flag(db: Database, op_id: str) -> bool:
    async with db.sessions() as s:
        op = await s.get(SyncOperation, op_id)
        assert op is not None
        return op.read_before_create


async def claim_one(db: Database, now: datetime, worker: str = "w") -> SyncOperation:
    (op,) = await outbox.claim_due(db, worker_id=worker, limit=1, lease=LEASE, now=now)
    return op


async def test_only_a_fresh_operation_starts_without_guards(db: Database) -> None:
    fresh, repair = await add(db, "fresh", fresh=True), await add(db, "repair", fresh=False)
    assert (await flag(db, fresh.id), await flag(db, repair.id)) == (False, True)
    async with db.begin_write() as s:  # a replayed key keeps the operation as it was
        again, created = await outbox.enqueue(
            s, idempotency_key="repair", connection="ghl", action="appointment.create",
            payload={"n": "repair"}, entity_type="appointment", entity_id="repair", now=T0, fresh=True,
        )  # fmt: skip
    assert not created and await flag(db, again.id) is True


async def test_enqueue_many_carries_fresh(db: Database) -> None:
    items = [
        outbox.NewOperation(
            f"k{i}", "ghl", "appointment.create", {"i": i}, "appointment", str(i), fresh=i == 0
        )
        for i in range(2)
    ]
    async with db.begin_write() as s:
        made = await outbox.enqueue_many(s, items, now=T0)
    assert [await flag(db, op_id) for op_id, _ in made] == [False, True]


async def test_a_first_claim_keeps_it_and_taking_over_an_expired_lease_sets_it(db: Database) -> None:
    op = await add(db, "a", fresh=True)
    first = await claim_one(db, T0, "dies")
    assert first.read_before_create is False  # what the first attempt runs with
    assert await flag(db, op.id) is False
    # The worker dies (no outcome recorded); its lease expires and another worker takes over.
    again = await claim_one(db, T0 + LEASE * 2, "takes-over")
    assert again.read_before_create is True
    assert await flag(db, op.id) is True  # durable in the claim's own write, before any request


async def test_a_failure_that_may_have_written_sets_it_and_one_that_cannot_does_not(db: Database) -> None:
    op = await add(db, "a", fresh=True)
    claimed = await claim_one(db, T0)
    await outbox.mark_failed(
        db, claimed, RateLimitedError("429"), T0, retryable=True, retry_at=T0, may_have_written=False
    )
    assert await flag(db, op.id) is False
    claimed = await claim_one(db, T0)
    await outbox.mark_failed(
        db, claimed, UpstreamUnavailableError("timed out"), T0, retryable=True, retry_at=T0
    )  # may_have_written defaults to True: the safe side
    assert await flag(db, op.id) is True
    claimed = await claim_one(db, T0)
    assert claimed.read_before_create is True
    await outbox.mark_failed(
        db, claimed, RateLimitedError("429"), T0, retryable=True, retry_at=T0, may_have_written=False
    )
    assert await flag(db, op.id) is True  # never set back


async def test_a_stop_mid_handler_sets_it_and_handing_back_an_unstarted_claim_does_not(
    db: Database,
) -> None:
    running, waiting = await add(db, "running", fresh=True), await add(db, "waiting", fresh=True)
    await outbox.claim_due(db, worker_id="w", limit=2, lease=LEASE, now=T0)
    await outbox.release(
        db,
        [
            outbox.Release(running.id, {"contact_id": "c1"}, may_have_written=True),
            outbox.Release(waiting.id, {}, may_have_written=False),
        ],
        worker_id="w",
        now=T0,
    )
    assert (await flag(db, running.id), await flag(db, waiting.id)) == (True, False)


async def test_a_retried_dead_letter_reads_first_though_its_attempts_are_reset(db: Database) -> None:
    op = await add(db, "a", fresh=True)
    claimed = await claim_one(db, T0)
    await outbox.mark_failed(
        db, claimed, InvalidRequestError("422"), T0, retryable=False, retry_at=None, may_have_written=False
    )
    assert await flag(db, op.id) is False
    (back,) = await outbox.retry_dead(db, ids=[op.id], now=T0)
    assert back.attempts == 0 and back.read_before_create is True
    again = await claim_one(db, T0)
    assert again.attempts == 1 and again.read_before_create is True

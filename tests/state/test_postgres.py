"""The outbox on PostgreSQL: same guarantees, with SKIP LOCKED claims running truly in parallel.

Each test module run gets its own schema (dropped afterwards), so it never touches other data in
the `test` database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from crm_mcp.errors import IdempotencyError, InvalidRequestError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation
from crm_mcp.state.status import sync_status
from tests.state.test_refs import check_link_missing_keeps_what_is_there

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

PG_URL = os.environ.get("CRM_MCP_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


async def _reachable() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture
async def pg() -> AsyncIterator[Database]:
    problem = await _reachable()
    if problem is not None:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL} ({problem})")
    schema = f"crm_mcp_test_{uuid.uuid4().hex[:12]}"
    admin = Database(PG_URL)
    async with admin.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(PG_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        await db.upgrade()
        await db.upgrade()  # idempotent at head
        yield db
    finally:
        await db.dispose()
        async with admin.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def _enqueue(db: Database, key: str, payload: dict | None = None) -> tuple[SyncOperation, bool]:
    async with db.begin_write() as s:
        return await outbox.enqueue(
            s,
            idempotency_key=key,
            connection="ghl",
            action="appointment.create",
            payload=payload if payload is not None else {"k": key},
            entity_type="appointment",
            entity_id=key,
            now=T0,
        )


async def test_schema_and_timestamps(pg: Database) -> None:
    assert not pg.is_sqlite
    assert await pg.current_revision() == "0008"
    op, _ = await _enqueue(pg, "k")
    async with pg.sessions() as s:
        row = await outbox.get_operation(s, op.id)
    assert row is not None and row.next_attempt_at == T0 and row.next_attempt_at.tzinfo is not None


async def test_webhook_event_ids_are_deduplicated_per_connection(pg: Database) -> None:
    """The same event id on two connections is two events; on one connection, one."""
    from crm_mcp.connectors.webhooks import IncomingEvent
    from crm_mcp.sync.inbox import store

    event = [IncomingEvent("evt-1", "ContactCreate", {"locationId": "L"})]
    assert await store(pg, "gohighlevel", "clinic-east", event, T0) == (["evt-1"], [])
    assert await store(pg, "gohighlevel", "clinic-west", event, T0) == (["evt-1"], [])
    assert await store(pg, "gohighlevel", "clinic-west", event, T0) == ([], ["evt-1"])


async def test_enqueue_idempotency(pg: Database) -> None:
    first, created = await _enqueue(pg, "k")
    again, created_again = await _enqueue(pg, "k")
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyError):
        await _enqueue(pg, "k", payload={"other": 1})


async def test_racing_enqueues_with_one_key_make_one_operation(pg: Database) -> None:
    results = await asyncio.gather(*(_enqueue(pg, "same") for _ in range(8)))
    assert sum(created for _, created in results) == 1
    assert len({op.id for op, _ in results}) == 1
    async with pg.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(SyncOperation))).scalar_one() == 1


async def test_parallel_claimers_skip_locked_rows(pg: Database) -> None:
    for i in range(50):
        await _enqueue(pg, f"k{i}")
    claims = await asyncio.gather(
        *(outbox.claim_due(pg, worker_id=f"w{i}", limit=4, lease=LEASE, now=T0) for i in range(15))
    )
    ids = [op.id for batch in claims for op in batch]
    assert len(ids) == len(set(ids))
    rest = await outbox.claim_due(pg, worker_id="late", limit=100, lease=LEASE, now=T0)
    assert len(ids) + len(rest) == 50
    assert not set(ids) & {op.id for op in rest}


async def test_expired_lease_is_reclaimed(pg: Database) -> None:
    await _enqueue(pg, "k")
    (op,) = await outbox.claim_due(pg, worker_id="w1", limit=1, lease=LEASE, now=T0)
    assert await outbox.claim_due(pg, worker_id="w2", limit=1, lease=LEASE, now=T0 + LEASE) == []
    (again,) = await outbox.claim_due(pg, worker_id="w2", limit=1, lease=LEASE, now=T0 + 2 * LEASE)
    assert again.id == op.id and again.attempts == 2
    assert await outbox.mark_succeeded(pg, op, {}, T0) is None  # w1 lost its lease


async def test_dead_letter_and_retry(pg: Database) -> None:
    await _enqueue(pg, "k")
    (op,) = await outbox.claim_due(pg, worker_id="w", limit=1, lease=LEASE, now=T0)
    await outbox.mark_failed(
        pg, op, InvalidRequestError("bad", status=422), T0, retryable=False, retry_at=None
    )
    async with pg.sessions() as s:
        (letter,) = await outbox.list_dead_letters(s)
        st = await sync_status(s, now=T0)
    assert letter.error_history[0]["status_code"] == 422
    assert st.dead_letters == 1 and st.verdict == "degraded"
    assert len(await outbox.retry_dead(pg, all_=True, now=T0, dry_run=True)) == 1
    assert [o.id for o in await outbox.retry_dead(pg, ids=[letter.id], now=T0)] == [op.id]
    assert await outbox.retry_dead(pg, all_=True, now=T0) == []


async def test_link_missing_adds_what_is_missing_and_keeps_what_is_there(pg: Database) -> None:
    await check_link_missing_keeps_what_is_there(pg)

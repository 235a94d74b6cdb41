"""`enqueue_many`: the batch form of `enqueue`, with the same idempotency rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from crm_mcp.errors import IdempotencyError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'many.db'}")
    await database.upgrade()
    yield database
    await database.dispose()


def item(key: str, n: int = 0) -> outbox.NewOperation:
    return outbox.NewOperation(
        idempotency_key=key,
        connection="c",
        action="thing.create",
        payload={"n": n},
        entity_type="thing",
        entity_id=key,
    )


async def rows(db: Database) -> dict[str, SyncOperation]:
    async with db.sessions() as s:
        return {op.idempotency_key: op for op in (await s.execute(select(SyncOperation))).scalars()}


async def test_batch_rows_are_what_enqueue_writes(db: Database) -> None:
    async with db.begin_write() as s:
        await outbox.enqueue(s, **vars(item("one")), now=T0)
    async with db.begin_write() as s:
        result = await outbox.enqueue_many(s, [item(f"k{i}", i) for i in range(1200)], now=T0)
    assert [created for _id, created in result] == [True] * 1200
    saved = await rows(db)
    assert len(saved) == 1201 and {op.id for op in saved.values()} >= {op_id for op_id, _ in result}
    a, b = saved["one"], saved["k0"]
    for column in ("status", "attempts", "next_attempt_at", "deadline_at", "result", "connection", "action"):
        assert getattr(a, column) == getattr(b, column), column
    assert b.request_hash == outbox.request_hash("thing.create", "c", {"n": 0})
    assert b.deadline_at == T0 + timedelta(hours=24)


async def test_known_keys_replay_and_changed_requests_are_refused(db: Database) -> None:
    async with db.begin_write() as s:
        [(first_id, _created)] = await outbox.enqueue_many(s, [item("a", 1)], now=T0)
    async with db.begin_write() as s:
        result = await outbox.enqueue_many(s, [item("a", 1), item("b", 2), item("b", 2)], now=T0)
    assert result[0] == (first_id, False)
    assert result[1][1] is True and result[2] == (result[1][0], False)  # a duplicate inside the batch
    with pytest.raises(IdempotencyError, match="'a' was already used for a different request"):
        async with db.begin_write() as s:
            await outbox.enqueue_many(s, [item("c", 3), item("a", 9)], now=T0)
    with pytest.raises(IdempotencyError, match="'d'"):
        async with db.begin_write() as s:
            await outbox.enqueue_many(s, [item("d", 1), item("d", 2)], now=T0)
    assert set(await rows(db)) == {"a", "b"}  # a refused batch writes nothing

"""Outbox behaviour on SQLite: idempotent enqueue, leased claims, retries, dead letters, retry_dead."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_mcp.errors import (
    IdempotencyError,
    InvalidRequestError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment, DeadLetter, SyncLog, SyncOperation

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    await database.upgrade()
    yield database
    await database.dispose()


async def add(
    db: Database, key: str, *, payload: dict | None = None, connection: str = "ghl"
) -> SyncOperation:
    async with db.begin_write() as s:
        op, created = await outbox.enqueue(
            s,
            idempotency_key=key,
            connection=connection,
            action="appointment.create",
            payload=payload if payload is not None else {"n": key},
            entity_type="appointment",
            entity_id=key,
            now=T0,
        )
        assert created
    return op


async def test_enqueue_is_idempotent_per_key(db: Database) -> None:
    first = await add(db, "k1", payload={"a": 1, "b": [1, 2]})
    async with db.begin_write() as s:
        again, created = await outbox.enqueue(
            s,
            idempotency_key="k1",
            connection="ghl",
            action="appointment.create",
            payload={"b": [1, 2], "a": 1},  # same request, keys in another order
            entity_type="appointment",
            entity_id="k1",
            now=T0 + timedelta(minutes=5),
        )
    assert not created
    assert again.id == first.id
    assert again.deadline_at == T0 + timedelta(hours=24)
    async with db.begin_write() as s:
        with pytest.raises(IdempotencyError, match="different request"):
            await outbox.enqueue(
                s,
                idempotency_key="k1",
                connection="ghl",
                action="appointment.create",
                payload={"a": 2},
                entity_type="appointment",
                entity_id="k1",
                now=T0,
            )
    async with db.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(SyncOperation))).scalar_one() == 1


async def test_a_key_reused_on_another_connection_names_nothing_of_it(db: Database) -> None:
    first = await add(db, "shared", connection="clinic-east")
    async with db.begin_write() as s:
        with pytest.raises(IdempotencyError) as caught:
            await outbox.enqueue(
                s,
                idempotency_key="shared",
                connection="clinic-west",
                action="contact.upsert",
                payload={"other": 1},
                entity_type="lead",
                entity_id="x",
                now=T0,
            )
    text = str(caught.value)
    assert "'shared' was already used for a different request" in text
    assert "clinic-east" not in text and first.id not in text
    with pytest.raises(IdempotencyError, match=first.id):  # the caller's own connection: named
        await add(db, "shared", payload={"other": 2}, connection="clinic-east")
    with pytest.raises(IdempotencyError) as batch:
        async with db.begin_write() as s:
            item = outbox.NewOperation("shared", "clinic-west", "contact.upsert", {"o": 1}, "lead", "x")
            await outbox.enqueue_many(s, [item], now=T0)
    assert "clinic-east" not in str(batch.value) and first.id not in str(batch.value)


async def test_an_oversized_payload_is_refused_and_nothing_is_stored(db: Database) -> None:
    from crm_mcp.errors import StateError

    with pytest.raises(StateError, match="an operation may store"):
        await add(db, "big", payload={"notes": "x" * (outbox.MAX_PAYLOAD_BYTES + 1)})
    with pytest.raises(StateError, match="an operation may store"):
        async with db.begin_write() as s:
            item = outbox.NewOperation("big2", "ghl", "x", {"n": "x" * outbox.MAX_PAYLOAD_BYTES}, "lead", "b")
            await outbox.enqueue_many(s, [item], now=T0)
    async with db.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(SyncOperation))).scalar_one() == 0


def test_outbox_commands_bound_every_value() -> None:
    """Whoever builds a command (a tool, a repair, a cross-CRM run), nothing unbounded is queued."""
    from pydantic import ValidationError

    from crm_mcp.sync.commands import ContactData, ContactNote, ContactUpsert

    huge = "x" * 1_000_000
    for bad in (
        {"first_name": huge},
        {"email": huge},
        {"tags": [huge]},
        {"tags": ["t"] * 1000},
        {"custom_fields": {"budget": huge}},
        {"custom_fields": {huge: 1}},
        {"custom_fields": {f"f{i}": i for i in range(1000)}},
    ):
        with pytest.raises(ValidationError):
            ContactData(**bad)
    with pytest.raises(ValidationError):
        ContactNote(contact_id="c1", body=huge)
    ok = ContactUpsert(lead_id="l1", contact=ContactData(first_name="A", custom_fields={"budget": 2500}))
    assert ok.payload()["contact"]["custom_fields"] == {"budget": 2500}


async def test_local_record_and_outbox_row_commit_together(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.begin_write() as s:
            s.add(Appointment(id="a1", connection="ghl", start_time=T0))
            await outbox.enqueue(
                s,
                idempotency_key="a1",
                connection="ghl",
                action="appointment.create",
                payload={},
                entity_type="appointment",
                entity_id="a1",
                now=T0,
            )
            raise RuntimeError("crash before commit")
    async with db.sessions() as s:
        assert (await s.execute(select(func.count()).select_from(SyncOperation))).scalar_one() == 0
        assert await s.get(Appointment, "a1") is None


async def test_claim_leases_due_work_once(db: Database) -> None:
    await add(db, "due")
    async with db.begin_write() as s:
        later, _ = await outbox.enqueue(
            s,
            idempotency_key="later",
            connection="ghl",
            action="x",
            payload={},
            entity_type="t",
            entity_id="1",
            now=T0 + timedelta(hours=1),
        )
    got = await outbox.claim_due(db, worker_id="w1", limit=10, lease=LEASE, now=T0)
    assert [op.idempotency_key for op in got] == ["due"]
    op = got[0]
    assert (op.status, op.lease_owner, op.lease_until, op.attempts) == ("in_flight", "w1", T0 + LEASE, 1)
    # leased: nobody else gets it while the lease holds
    assert await outbox.claim_due(db, worker_id="w2", limit=10, lease=LEASE, now=T0 + LEASE) == []
    # the lease expires (the worker died): another worker reclaims it
    again = await outbox.claim_due(db, worker_id="w2", limit=10, lease=LEASE, now=T0 + LEASE * 2)
    assert [o.id for o in again] == [op.id]
    assert again[0].lease_owner == "w2" and again[0].attempts == 2
    # the first worker's late result is refused: the outcome belongs to w2
    assert await outbox.mark_succeeded(db, op, {"late": True}, T0 + LEASE * 2) is None
    assert later.status == "pending"


async def test_claim_respects_limit_and_order(db: Database) -> None:
    for i in range(5):
        await add(db, f"k{i}")
    first = await outbox.claim_due(db, worker_id="w", limit=3, lease=LEASE, now=T0)
    second = await outbox.claim_due(db, worker_id="w", limit=3, lease=LEASE, now=T0)
    assert len(first) == 3 and len(second) == 2
    assert not {o.id for o in first} & {o.id for o in second}


async def test_concurrent_claimers_never_share_an_operation(db: Database, tmp_path: Path) -> None:
    for i in range(40):
        await add(db, f"k{i}")
    other = Database(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")  # a second process, in effect
    try:
        dbs = [db, other]
        claims = await asyncio.gather(
            *(
                outbox.claim_due(dbs[i % 2], worker_id=f"w{i}", limit=3, lease=LEASE, now=T0)
                for i in range(20)
            )
        )
    finally:
        await other.dispose()
    ids = [op.id for batch in claims for op in batch]
    assert len(ids) == 40
    assert len(set(ids)) == 40


async def test_begin_write_takes_the_write_lock_up_front(db: Database, tmp_path: Path) -> None:
    async with db.begin_write():
        raw = sqlite3.connect(tmp_path / "outbox.db", timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                raw.execute("BEGIN IMMEDIATE")
        finally:
            raw.close()


async def test_retry_with_backoff_then_dead_after_deadline(db: Database) -> None:
    op = await add(db, "k")
    now = T0
    for attempt in range(1, 4):
        (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=now)
        err = UpstreamUnavailableError(f"502 number {attempt}", provider="ghl", status=502)
        row = await outbox.mark_failed(
            db, claimed, err, now, retryable=True, retry_at=now + timedelta(minutes=attempt)
        )
        assert row is not None and row.status == "pending" and row.attempts == attempt
        assert row.next_attempt_at == now + timedelta(minutes=attempt)
        assert await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=now) == []
        now += timedelta(minutes=attempt)
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=now)
    err = UpstreamUnavailableError("still down", provider="ghl", status=503)
    # the next retry would fall after the deadline: the worker passes retry_at=None
    row = await outbox.mark_failed(db, claimed, err, now, retryable=True, retry_at=None)
    assert row is not None and row.status == "dead"
    async with db.sessions() as s:
        (letter,) = await outbox.list_dead_letters(s)
        assert letter.operation_id == op.id and letter.action == "appointment.create"
        assert "Gave up after 4 attempt(s)" in letter.reason and "still down" in letter.reason
        assert [h["attempt"] for h in letter.error_history] == [1, 2, 3, 4]
        assert [h["status_code"] for h in letter.error_history] == [502, 502, 502, 503]
        assert letter.error_history[-1]["outcome"] == "dead"
        assert letter.error_history[0]["error_type"] == "UpstreamUnavailableError"
        assert (await outbox.get_dead_letter(s, letter.id)) is not None
        assert (await outbox.get_dead_letter(s, op.id)).id == letter.id  # type: ignore[union-attr]
        logs = (await s.execute(select(SyncLog.outcome).order_by(SyncLog.id))).scalars().all()
        assert logs == ["retry", "retry", "retry", "dead"]


async def test_retry_at_past_deadline_is_dead(db: Database) -> None:
    await add(db, "k")
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    err = UpstreamUnavailableError("down")
    row = await outbox.mark_failed(db, claimed, err, T0, retryable=True, retry_at=T0 + timedelta(days=2))
    assert row is not None and row.status == "dead"


async def test_non_retryable_error_is_dead_at_once(db: Database) -> None:
    await add(db, "k")
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    err = InvalidRequestError("calendarId is not valid", provider="ghl", status=422)
    row = await outbox.mark_failed(db, claimed, err, T0, retryable=False, retry_at=None)
    assert row is not None and row.status == "dead"
    assert row.last_error == "InvalidRequestError: calendarId is not valid provider=ghl status=422"
    async with db.sessions() as s:
        (letter,) = await outbox.list_dead_letters(s)
    assert letter.reason.startswith("Failed permanently (InvalidRequestError)")


async def test_rate_limit_is_a_reschedule_not_a_failed_attempt(db: Database) -> None:
    await add(db, "k")
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    err = RateLimitedError("429", retry_after=30, provider="ghl", status=429)
    row = await outbox.mark_failed(db, claimed, err, T0, retryable=True, retry_at=T0 + timedelta(seconds=30))
    assert row is not None
    assert (row.status, row.attempts) == ("pending", 0)
    async with db.sessions() as s:
        log = (await s.execute(select(SyncLog))).scalar_one()
    assert (log.outcome, log.attempt, log.status_code) == ("rescheduled", 1, 429)


async def test_unexpected_error_text_is_redacted(db: Database) -> None:
    await add(db, "k")
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    err = ValueError("failed with Authorization: Bearer sk-canary-123456")
    row = await outbox.mark_failed(db, claimed, err, T0, retryable=False, retry_at=None)
    assert row is not None and "sk-canary-123456" not in (row.last_error or "")
    async with db.sessions() as s:
        (letter,) = await outbox.list_dead_letters(s)
    assert "sk-canary-123456" not in str(letter.error_history) + letter.reason


async def test_checkpoint_requires_the_lease(db: Database) -> None:
    await add(db, "k")
    with pytest.raises(outbox.LeaseLostError):
        await outbox.checkpoint(db, (await add(db, "k2")).id, {"step": 1})  # pending, not leased
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    assert await outbox.checkpoint(db, claimed.id, {"contact_id": "c1"}, worker_id="w") == {
        "contact_id": "c1"
    }
    merged = await outbox.checkpoint(
        db, claimed.id, {"appointment_id": "e1"}, worker_id="w", lease_until=T0 + LEASE * 3
    )
    assert merged == {"contact_id": "c1", "appointment_id": "e1"}
    with pytest.raises(outbox.LeaseLostError):
        await outbox.checkpoint(db, claimed.id, {"x": 1}, worker_id="someone-else")
    async with db.sessions() as s:
        row = await outbox.get_operation(s, claimed.id)
    assert row is not None and row.result == merged and row.lease_until == T0 + LEASE * 3
    done = await outbox.mark_succeeded(db, claimed, {"final": True}, T0, duration_ms=12)
    assert done is not None and done.result == {**merged, "final": True}


async def _kill(db: Database, key: str, connection: str = "ghl") -> SyncOperation:
    op = await add(db, key, connection=connection)
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    row = await outbox.mark_failed(
        db, claimed, InvalidRequestError("bad"), T0, retryable=False, retry_at=None
    )
    assert row is not None and row.status == "dead"
    return op


async def test_retry_dead_dry_run_then_requeue_idempotently(db: Database) -> None:
    a = await _kill(db, "a")
    b = await _kill(db, "b", connection="zoho")
    later = T0 + timedelta(hours=2)
    preview = await outbox.retry_dead(db, all_=True, now=later, dry_run=True)
    assert {op.id for op in preview} == {a.id, b.id}
    async with db.sessions() as s:
        assert {(await outbox.get_operation(s, a.id)).status} == {"dead"}  # type: ignore[union-attr]
        assert len(await outbox.list_dead_letters(s)) == 2

    done = await outbox.retry_dead(db, connection="ghl", now=later)
    assert [op.id for op in done] == [a.id]
    op = done[0]
    assert (op.status, op.attempts, op.next_attempt_at, op.deadline_at) == (
        "pending",
        0,
        later,
        later + timedelta(hours=24),
    )
    assert await outbox.retry_dead(db, ids=[a.id], now=later) == []  # already pending: no-op
    async with db.sessions() as s:
        (still_dead,) = await outbox.list_dead_letters(s)
        assert still_dead.operation_id == b.id
        letters = await outbox.list_dead_letters(s, include_retried=True)
        retried = next(x for x in letters if x.operation_id == a.id)
        assert (retried.retried_at, retried.retry_count) == (later, 1)

    # retry by dead-letter entry id works too, and the worker can claim it again
    assert [op.id for op in await outbox.retry_dead(db, ids=[still_dead.id], now=later)] == [b.id]
    claimed = await outbox.claim_due(db, worker_id="w", limit=10, lease=LEASE, now=later)
    assert {op.id for op in claimed} == {a.id, b.id}


async def test_retry_dead_needs_a_selection(db: Database) -> None:
    with pytest.raises(ValueError, match="which dead operations"):
        await outbox.retry_dead(db, now=T0)


async def test_dying_again_reuses_the_dead_letter(db: Database) -> None:
    a = await _kill(db, "a")
    await outbox.retry_dead(db, ids=[a.id], now=T0)
    (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=T0)
    await outbox.mark_failed(
        db, claimed, InvalidRequestError("bad again"), T0, retryable=False, retry_at=None
    )
    async with db.sessions() as s:
        letters = (await s.execute(select(DeadLetter))).scalars().all()
    assert len(letters) == 1
    assert letters[0].retried_at is None and letters[0].retry_count == 1
    assert [h["error"] for h in letters[0].error_history] == ["bad", "bad again"]

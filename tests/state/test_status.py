"""sync_status: the numbers, the verdict and the advice, from a hand-built outbox history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm_mcp.errors import InvalidRequestError, UpstreamUnavailableError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import WorkerHeartbeat
from crm_mcp.state.status import HealthThresholds, sync_status

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/status.db")
    await database.upgrade()
    yield database
    await database.dispose()


async def add(db: Database, key: str, now: datetime = T0) -> None:
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


async def run(db: Database, outcome: str, now: datetime = T0) -> None:
    (op,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=now)
    if outcome == "ok":
        await outbox.mark_succeeded(db, op, {}, now)
    elif outcome == "retry":
        err = UpstreamUnavailableError("502 bad gateway", status=502)
        await outbox.mark_failed(db, op, err, now, retryable=True, retry_at=now + timedelta(hours=1))
    else:
        err = InvalidRequestError("calendarId not found", status=422)
        await outbox.mark_failed(db, op, err, now, retryable=False, retry_at=None)


async def beat(db: Database, seen: datetime) -> None:
    async with db.begin_write() as s:
        s.add(WorkerHeartbeat(worker_id="w", started_at=T0, seen_at=seen, pid=1, processed=3))


async def test_empty_database_is_healthy(db: Database) -> None:
    async with db.sessions() as s:
        st = await sync_status(s, now=T0)
    assert st.verdict == "healthy" and st.reasons == [] and st.recommendations == []
    assert st.totals == {"pending": 0, "in_flight": 0, "succeeded": 0, "dead": 0}
    assert st.success_rate is None and st.oldest_pending_age_s is None


async def test_numbers_and_healthy_verdict(db: Database) -> None:
    for i in range(10):
        await add(db, f"ok{i}")
        await run(db, "ok")
    await add(db, "flaky")
    await run(db, "retry")  # stays pending, due in an hour
    await add(db, "fresh", now=T0 + timedelta(minutes=1))
    await beat(db, T0 + timedelta(minutes=2))
    async with db.sessions() as s:
        st = await sync_status(s, now=T0 + timedelta(minutes=2))
    assert st.totals == {"pending": 2, "in_flight": 0, "succeeded": 10, "dead": 0}
    assert (st.successes_in_window, st.failures_in_window) == (10, 1)
    assert st.success_rate == pytest.approx(10 / 11)
    assert st.pending_backlog == 2 and st.due_now == 1
    assert st.oldest_pending_age_s == 120.0
    assert [f.error_type for f in st.recent_failures] == ["UpstreamUnavailableError"]
    assert st.live_workers == 1 and st.workers[0].alive
    assert st.verdict == "healthy", st.reasons


async def test_low_success_rate_and_dead_letters_degrade(db: Database) -> None:
    await add(db, "a")
    await run(db, "ok")
    await add(db, "b")
    await run(db, "dead")
    async with db.sessions() as s:
        st = await sync_status(s, now=T0)
    assert st.verdict == "degraded"
    assert st.success_rate == 0.5 and st.dead_letters == 1
    assert any("Success rate" in r for r in st.reasons)
    assert any("1 operation(s) are dead" in r for r in st.reasons)
    advice = " ".join(st.recommendations)
    assert "retry_failed_sync for the 1 dead operation(s)" in advice
    assert "InvalidRequestError" in advice and "calendarId not found" in advice


async def test_old_backlog_without_a_live_worker_degrades(db: Database) -> None:
    await add(db, "a")
    await beat(db, T0)  # last seen 20 minutes before "now": not alive
    async with db.sessions() as s:
        st = await sync_status(s, now=T0 + timedelta(minutes=20))
    assert st.verdict == "degraded"
    assert st.live_workers == 0 and not st.workers[0].alive
    assert any("waited 20 min" in r for r in st.reasons)
    assert any("no worker is alive" in r for r in st.reasons)
    assert any("crm-mcp worker" in r for r in st.recommendations)


async def test_many_dead_letters_are_unhealthy_and_thresholds_apply(db: Database) -> None:
    for i in range(4):
        await add(db, f"d{i}")
        await run(db, "dead")
    async with db.sessions() as s:
        strict = await sync_status(s, now=T0, thresholds=HealthThresholds(max_dead_letters=3))
        lenient = await sync_status(
            s, now=T0, thresholds=HealthThresholds(min_success_rate=0.0, degraded_dead_letters=10)
        )
    assert strict.verdict == "unhealthy"
    assert lenient.verdict == "healthy"


async def test_window_limits_the_success_rate(db: Database) -> None:
    await add(db, "old")
    await run(db, "dead")
    later = T0 + timedelta(days=2)
    await add(db, "new", now=later)
    await run(db, "ok", now=later)
    async with db.sessions() as s:
        st = await sync_status(s, now=later, window=timedelta(hours=24))
    assert st.success_rate == 1.0 and st.attempts_in_window == 1

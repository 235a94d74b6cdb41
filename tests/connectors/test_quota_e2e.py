"""Quota and breaker behaviour against the GHL simulator over loopback, on one virtual clock.

The simulator's rate limiter and the connector share the injected clock, so a limiter "wait" moves
time for both sides and nothing sleeps on the wall.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_mcp.connectors.ratelimit import RateLimiter
from crm_mcp.errors import CircuitOpenError, RateLimitedError, UpstreamUnavailableError
from crm_mcp.providers.gohighlevel.connector import GHL_SPEC, GoHighLevelConnector
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.sandbox.runner import SandboxServer
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation
from crm_mcp.sync.context import HandlerContext
from crm_mcp.sync.worker import OutboxWorker

pytestmark = pytest.mark.anyio


@pytest.fixture
def served(fake_time: Any) -> Iterator[tuple[GHLSandbox, SandboxServer]]:
    sim = GHLSandbox(GHLSandboxConfig(burst_max=20, burst_interval_ms=2000), clock=fake_time.clock)
    server = SandboxServer(sim.app).start()
    yield sim, server
    server.stop()


@pytest.fixture
async def conn(
    served: tuple[GHLSandbox, SandboxServer], fake_time: Any
) -> AsyncIterator[GoHighLevelConnector]:
    limiter = RateLimiter.for_spec(
        GHL_SPEC, clock=fake_time.clock, sleep=fake_time.sleep, wall_clock=fake_time.wall
    )
    c = GoHighLevelConnector(
        "quota", token=SANDBOX_TOKEN, location_id=SANDBOX_LOCATION_ID, base_url=served[1].url,
        clock=fake_time.clock, sleep=fake_time.sleep, limiter=limiter, max_attempts=1,
    )  # fmt: skip
    yield c
    await c.aclose()


async def test_header_driven_slow_down_keeps_a_sustained_load_off_the_wall(
    conn: GoHighLevelConnector, served: tuple[GHLSandbox, SandboxServer], fake_time: Any
) -> None:
    for _ in range(100):
        await conn.ping()
    sim = served[0]
    assert sim.stats["by_status"] == {"200": 100}  # no 429, no retry needed
    snap = conn.snapshot()["limiter"]
    assert snap["limit"] == 20 and snap["interval_s"] == 2.0  # learned from X-RateLimit-*
    assert snap["waits"] > 0
    assert fake_time.now - fake_time.start >= 2.0 * (100 // 20 - 1)  # paced by the window


async def test_retry_after_is_honoured_and_the_penalty_not_retriggered(
    conn: GoHighLevelConnector, served: tuple[GHLSandbox, SandboxServer], fake_time: Any
) -> None:
    sim = served[0]
    await conn.ping()
    sim.faults.set("rate_limit", retry_after=7, count=1)
    started = fake_time.now
    with pytest.raises(RateLimitedError) as info:  # max_attempts=1: the 429 comes back typed
        await conn.ping()
    assert info.value.retry_after == 7
    await conn.ping()  # waits the penalty out before sending anything
    assert fake_time.now - started >= 7
    assert sim.stats["by_status"]["429"] == 1 and sim.stats["by_status"]["200"] == 2


async def test_daily_budget_exhaustion_reschedules_instead_of_blocking(
    conn: GoHighLevelConnector, served: tuple[GHLSandbox, SandboxServer], fake_time: Any, tmp_path: Path
) -> None:
    sim = served[0]
    sim.set_limits(daily_limit=3)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}")
    await db.upgrade()
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)

    async def ping(op: SyncOperation, ctx: HandlerContext) -> dict[str, Any]:
        await conn.ping()
        return {}

    try:
        async with db.begin_write() as s:
            for i in range(5):
                await outbox.enqueue(s, idempotency_key=f"k{i}", connection="quota", action="ping",
                                     payload={}, entity_type="x", entity_id=str(i), now=now)  # fmt: skip
        worker = OutboxWorker(db, {"ping": ping}, concurrency=1, clock=lambda: now)
        slept_before = sum(fake_time.sleeps)
        await worker.run_until_idle()
        assert sum(fake_time.sleeps) - slept_before < 30  # no task held for the daily reset
        async with db.sessions() as s:
            ops = sorted((await s.execute(select(SyncOperation))).scalars(), key=lambda o: o.entity_id)
        assert [o.status for o in ops] == ["succeeded"] * 3 + ["pending"] * 2
        for op in ops[3:]:  # GoHighLevel sends no reset time: the budget is looked at in 10 minutes
            due = op.next_attempt_at.replace(tzinfo=UTC)
            assert now + timedelta(minutes=9) <= due <= now + timedelta(minutes=10, seconds=1)
            assert "rate limit" in (op.last_error or "")
    finally:
        await db.dispose()
    assert sim.stats["by_status"] == {"200": 3}  # the spent budget was never hit again


async def test_breaker_opens_half_opens_and_closes(
    conn: GoHighLevelConnector, served: tuple[GHLSandbox, SandboxServer], fake_time: Any
) -> None:
    sim = served[0]
    sim.faults.set("error", status=503)
    for _ in range(5):
        with pytest.raises(UpstreamUnavailableError):
            await conn.ping()
    assert conn.snapshot()["breaker"]["state"] == "open"
    sent = sim.stats["total"]
    with pytest.raises(CircuitOpenError):
        await conn.ping()
    assert sim.stats["total"] == sent  # refused without touching the CRM
    fake_time.advance(5.0)
    assert conn.snapshot()["breaker"]["state"] == "half_open"
    with pytest.raises(UpstreamUnavailableError):
        await conn.ping()  # the probe fails: open again, for longer
    snap = conn.snapshot()["breaker"]
    assert snap["state"] == "open" and snap["open_for_s"] == pytest.approx(10.0)
    sim.faults.clear()
    fake_time.advance(10.0)
    await conn.ping()  # the probe succeeds
    assert conn.snapshot()["breaker"]["state"] == "closed"
    await conn.ping()

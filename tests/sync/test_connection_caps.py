"""Each connection holds at most the slots its rate limit keeps busy (the worker's default cap).

A backlog on a rate-limited connection would otherwise fill every worker slot with operations
waiting in that connection's limiter, while other tenants' operations wait for a slot."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from crm_mcp.connectors.ratelimit import RateLimiter
from crm_mcp.server.run import COLD_CAP, connection_caps
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation
from crm_mcp.sync.context import HandlerContext
from crm_mcp.sync.worker import OutboxWorker

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def answered_after(limiter: RateLimiter, ticks: Ticks, seconds: float) -> None:
    await limiter.acquire()
    ticks.t += seconds
    limiter.observe({})


async def test_a_limiter_knows_how_many_requests_in_flight_its_limit_keeps_busy() -> None:
    ticks = Ticks()
    limiter = RateLimiter(limit=10, interval_s=1.0, clock=ticks)
    assert limiter.useful_concurrency() is None  # nothing answered yet: no basis for a cap
    await answered_after(limiter, ticks, 0.2)
    assert limiter.useful_concurrency() == 4  # 10/s x 0.2 s, doubled
    slow = RateLimiter(limit=100, interval_s=10.0, clock=ticks)  # GoHighLevel's 100 per 10 s
    await answered_after(slow, ticks, 0.05)
    assert slow.useful_concurrency() == 2  # never below 2
    lifted = RateLimiter(limit=1_000_000, interval_s=1.0, clock=ticks)
    await answered_after(lifted, ticks, 0.05)
    assert lifted.useful_concurrency() == 100_000  # no practical cap


async def test_a_slow_first_few_answers_do_not_set_the_cap() -> None:
    """A connection's first answers come over new HTTP connections, while others warm up too:
    several times the CRM's latency. The cap follows the ordinary answers, not those."""
    ticks = Ticks()
    limiter = RateLimiter(limit=40, interval_s=1.0, clock=ticks)
    for took in (0.45, 0.40, 0.30):  # cold
        await answered_after(limiter, ticks, took)
    assert limiter.useful_concurrency() == 32  # nothing else to go on yet
    for _ in range(4):
        await answered_after(limiter, ticks, 0.05)
    assert limiter.useful_concurrency() == 4  # 40/s x 0.05 s x 2, after four ordinary answers
    for _ in range(9):  # the CRM slows down for good: followed within half the samples
        await answered_after(limiter, ticks, 0.2)
    assert limiter.useful_concurrency() == 16


async def test_the_worker_caps_each_connection_from_its_limiter() -> None:
    ticks = Ticks()
    known = RateLimiter(limit=20, interval_s=1.0, clock=ticks)
    await answered_after(known, ticks, 0.1)
    names = ["limited", "fresh", "no-client", "unused"]
    rt: Any = SimpleNamespace(
        connections=lambda: [SimpleNamespace(name=n) for n in names],
        cached_connectors=lambda: {
            "limited": SimpleNamespace(client=SimpleNamespace(limiter=known)),
            "fresh": SimpleNamespace(client=SimpleNamespace(limiter=RateLimiter(limit=5, clock=ticks))),
            "no-client": SimpleNamespace(),
        },
    )
    # limited: 20/s x 0.1 s x 2. fresh (nothing answered yet) and unused (no connector yet): the
    # cold cap, so that a first claim beside a backlog cannot take every slot. no-client: cannot say.
    assert connection_caps(rt) == {"limited": 4, "fresh": COLD_CAP, "unused": COLD_CAP}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/caps.db")
    await database.upgrade()
    yield database
    await database.dispose()


async def test_a_capped_connection_leaves_the_other_slots_to_other_connections(db: Database) -> None:
    items = [
        outbox.NewOperation(
            idempotency_key=f"{c}-{i}",
            connection=c,
            action="thing.create",
            payload={"i": i},
            entity_type="thing",
            entity_id=f"{c}-{i}",
        )
        for c, n in (("noisy", 40), ("quiet", 8))
        for i in range(n)
    ]
    async with db.begin_write() as session:
        await outbox.enqueue_many(session, items, now=T0)
    active: Counter[str] = Counter()
    most: Counter[str] = Counter()

    async def handler(op: SyncOperation, ctx: HandlerContext) -> dict:
        active[op.connection] += 1
        most[op.connection] = max(most[op.connection], active[op.connection])
        await asyncio.sleep(0.002)
        active[op.connection] -= 1
        return {}

    worker = OutboxWorker(
        db,
        {"thing.create": handler},
        worker_id="w1",
        clock=lambda: T0,
        rng=random.Random(1),
        concurrency=6,
        connection_caps=lambda: {"noisy": 2},
    )
    assert await asyncio.wait_for(worker.drain(), 30) == 48
    assert most["noisy"] <= 2  # without the cap it takes all 6 slots
    assert most["quiet"] > 2  # the rest went to the uncapped connection

"""Redis-shared rate limiter and breaker: two instances stand for two processes (separate clients).

Against the real Redis at 127.0.0.1:6379 db 15 (skipped locally when it is down, failing on CI).
Most tests inject one virtual clock into both instances (sent to the Lua scripts instead of Redis
TIME), so waits are asserted exactly and nothing sleeps on the wall; the sandbox test runs on real
time and Redis TIME end to end.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from crm_mcp.connectors.breaker import BreakerState
from crm_mcp.connectors.shared_breaker import RedisCircuitBreaker
from crm_mcp.connectors.shared_redis import RedisStore, key_prefix
from crm_mcp.connectors.shared_state import RedisRateLimiter, build_shared_guards
from crm_mcp.errors import CircuitOpenError, RateLimitedError
from crm_mcp.providers.gohighlevel.connector import GHL_SPEC, GoHighLevelConnector
from tests.conftest import REDIS_URL, require_service

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

H = {
    "rem": "X-RateLimit-Remaining",
    "max": "X-RateLimit-Max",
    "int": "X-RateLimit-Interval-Milliseconds",
    "day": "X-RateLimit-Daily-Remaining",
}


@pytest.fixture
def connection() -> Iterator[str]:
    """A connection name of this test's own; its keys are deleted afterwards."""
    require_service("Redis", "127.0.0.1", 6379)
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=key_prefix(GHL_SPEC.name, name).replace("{", "[{]") + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def stores() -> AsyncIterator[list[RedisStore]]:
    """Two independent Redis clients: one per simulated process."""
    made = [RedisStore(REDIS_URL), RedisStore(REDIS_URL)]
    yield made
    for store in made:
        await store.aclose()


def limiters(stores: list[RedisStore], connection: str, t: Any, **kw: Any) -> list[RedisRateLimiter]:
    return [
        RedisRateLimiter.for_spec(GHL_SPEC, s, connection, clock=t.clock, sleep=t.sleep, **kw) for s in stores
    ]


def breakers(stores: list[RedisStore], connection: str, t: Any, **kw: Any) -> list[RedisCircuitBreaker]:
    return [RedisCircuitBreaker(s, GHL_SPEC.name, connection, clock=t.clock, **kw) for s in stores]


def max_in_any_window(times: list[float], interval: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, now in enumerate(times):
        while times[j] <= now - interval:
            j += 1
        best = max(best, i - j + 1)
    return best


# -- rate limiter ------------------------------------------------------------------------------
async def test_two_processes_share_one_window(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    """Sends interleaved between the two in an irregular order (concurrency on real time is the
    sandbox test's job: a virtual clock that jumps during a round trip would blur the timing)."""
    t = fake_time
    a, b = limiters(stores, connection, t, limit=10, interval_s=2.0, max_wait_s=60)
    sent: list[float] = []
    order = random.Random(7)
    for _ in range(50):
        rl = order.choice((a, b))
        await rl.acquire()
        sent.append(t.now)
        rl.observe({})  # answered at once (virtual time)
    assert max_in_any_window(sent, 2.0) <= 10  # together, never more than the one budget
    assert sent[-1] - sent[0] == pytest.approx(8.0)  # and the whole budget is used: 50 at 10 per 2 s
    assert a.waits and b.waits


async def test_learned_limits_are_seen_by_every_process(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    t = fake_time
    a, b = limiters(stores, connection, t)
    await a.acquire()
    a.observe({H["max"]: "5", H["int"]: "2000", H["rem"]: "4"})
    await a.flush()
    snap = await b.refresh()
    assert (snap["limit"], snap["interval_s"], snap["in_window"]) == (5, 2.0, 1)
    start = t.now
    for _ in range(4):
        await b.acquire()
    assert t.now == start  # 5 in the window now, no wait
    await b.acquire()
    assert t.now == pytest.approx(start + 2.0)  # B waited for A's send to leave the 2 s window


async def test_the_shared_view_counts_sends_since_the_crms_count(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    t = fake_time
    a, b = limiters(stores, connection, t)
    await a.acquire()
    a.observe({H["max"]: "100", H["int"]: "10000", H["rem"]: "40"})
    for _ in range(3):
        await b.acquire()
    assert (await a.refresh())["server_remaining"] == 37
    t.advance(10.0)
    assert (await a.refresh())["server_remaining"] is None


async def test_a_429_pauses_every_process(stores: list[RedisStore], connection: str, fake_time: Any) -> None:
    t = fake_time
    a, b = limiters(stores, connection, t)
    await a.acquire()
    a.observe({})
    a.note_429(3.0)
    b.note_429(None)  # a straggler's 429 during the penalty, in the other process: no restart
    await a.flush()
    await b.flush()
    assert (await b.refresh())["blocked_for_s"] == pytest.approx(3.0)
    start = t.now
    await b.acquire()
    assert t.now == pytest.approx(start + 3.0)
    assert (await a.refresh())["blocked_for_s"] == 0.0


async def test_a_wait_beyond_max_wait_raises_with_retry_after(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    a, b = limiters(stores, connection, fake_time, max_wait_s=5.0)
    a.note_429(60.0)
    await a.flush()
    with pytest.raises(RateLimitedError) as err:
        await b.acquire()
    assert err.value.retry_after == pytest.approx(60.0)
    assert fake_time.sleeps == []


async def test_daily_budget_is_shared_and_exhaustion_raises(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    t = fake_time
    a, b = limiters(stores, connection, t)
    await a.acquire()
    a.observe({H["day"]: "2"})
    await a.flush()
    await a.acquire()
    await b.acquire()  # the last two of the day, one each
    assert (await b.refresh())["daily_remaining"] == 0
    with pytest.raises(RateLimitedError) as err:
        await b.acquire()
    assert err.value.retry_after == pytest.approx(600.0, abs=0.01)  # no reset time sent: recheck
    with pytest.raises(RateLimitedError):
        await a.acquire()
    t.advance(601)  # the budget is unknown again until a response says
    await a.acquire()


async def test_server_counting_more_than_we_sent_slows_everyone(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    t = fake_time
    a, b = limiters(stores, connection, t, max_wait_s=60)
    await a.acquire()
    # another client spends the same quota: the server has only 3 left where our log leaves 99
    a.observe({H["max"]: "100", H["int"]: "10000", H["rem"]: "3"})
    await a.flush()
    start = t.now
    for _ in range(3):
        await b.acquire()
    assert t.now == pytest.approx(start + 10.0)  # budget 3 - reserve 1: two paced, then the wall


async def test_keys_are_namespaced_and_expire(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    (rl, _), (cb, _) = limiters(stores, connection, fake_time), breakers(stores, connection, fake_time)
    await rl.acquire()
    rl.observe({H["day"]: "10"})
    rl.note_429(1.0)
    cb.record_failure()
    await rl.flush()
    await cb.flush()
    client = stores[0].client()
    keys = sorted([k.decode() async for k in client.scan_iter(match=f"crm-mcp:*{connection}*")])
    prefix = f"crm-mcp:{{gohighlevel:{connection}}}:"
    assert keys == [prefix + s for s in ("cb:calls", "cb:failures", "rl:log", "rl:state")]
    for key in keys:
        assert 0 < await client.ttl(key) <= 2 * 86400


async def test_falls_back_to_local_state_when_redis_is_down(connection: str, fake_time: Any) -> None:
    store = RedisStore("redis://127.0.0.1:1/0", timeout_s=0.2)  # nothing listens there
    rl = RedisRateLimiter.for_spec(GHL_SPEC, store, connection, clock=fake_time.clock, sleep=fake_time.sleep)
    cb = RedisCircuitBreaker(store, GHL_SPEC.name, connection, clock=fake_time.clock)
    rl.breaker = cb
    await rl.acquire()
    rl.observe({H["max"]: "7"})
    assert rl.snapshot()["shared"] is False and rl.snapshot()["limit"] == 7
    for _ in range(5):
        cb.record_failure()
    await cb.flush()
    with pytest.raises(CircuitOpenError):
        cb.check("gohighlevel")  # the local fallback tripped
    await rl.aclose()


async def test_concurrent_requests_share_round_trips(connection: str, fake_time: Any) -> None:
    """A busy process: 40 requests at once, each a breaker admission, a take, an observation and a
    record, cost a few pipelines, not 40 x 4 round trips one after the other."""
    import redis.asyncio as aioredis

    sends = 0

    class Counted(aioredis.Connection):
        async def send_packed_command(self, *args: Any, **kw: Any) -> None:
            nonlocal sends
            sends += 1
            await super().send_packed_command(*args, **kw)

    pool = aioredis.ConnectionPool.from_url(REDIS_URL, connection_class=Counted)
    client = aioredis.Redis(connection_pool=pool)
    store = RedisStore(client=client)
    rl = RedisRateLimiter.for_spec(GHL_SPEC, store, connection, clock=fake_time.clock, sleep=fake_time.sleep)
    cb = RedisCircuitBreaker(store, GHL_SPEC.name, connection, clock=fake_time.clock)
    rl.breaker = cb

    async def request() -> None:
        await rl.acquire()
        rl.observe({H["max"]: "100", H["int"]: "10000", H["rem"]: "90"})
        cb.record_success()

    await asyncio.gather(*(request() for _ in range(40)))
    await rl.flush()
    await cb.flush()
    try:
        # two pipelines (admissions and takes; observations and records), and on a Redis that has
        # not seen the scripts yet a SCRIPT LOAD for each and the pipeline again: 360 one by one
        assert sends <= 10
        assert (await rl.refresh())["in_window"] == 40
        assert (await cb.refresh())["calls_in_window"] == 40
    finally:
        await client.aclose()


async def test_an_update_applies_before_the_next_take_without_a_flush(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    """Updates go in call order: a limit learned from one answer binds this process's next take
    though nobody awaited the update, and another process's too once it is applied."""
    t = fake_time
    a, b = limiters(stores, connection, t, max_wait_s=60)
    await a.acquire()
    a.observe({H["max"]: "2", H["int"]: "1000"})
    start = t.now
    await a.acquire()  # the second of 2 per second
    await a.acquire()  # the third waits for the first to leave the window
    assert t.now == pytest.approx(start + 1.0)
    assert (await b.refresh())["limit"] == 2


async def test_scripts_are_loaded_again_after_redis_forgot_them(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    (rl, _) = limiters(stores, connection, fake_time)
    await rl.acquire()
    await stores[0].client().script_flush()  # as after a restart of Redis
    await rl.acquire()
    rl.observe({})
    await rl.flush()
    snap = await rl.refresh()
    assert snap["shared"] is True and snap["in_window"] == 2


# -- breaker -----------------------------------------------------------------------------------
async def test_a_breaker_opened_by_one_process_is_open_for_the_other(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    a, b = breakers(stores, connection, fake_time)
    b.record_success()
    await b.flush()
    for _ in range(3):
        a.record_failure()
    await a.flush()
    snap = await a.refresh()  # outcomes of both processes land in one window: 4 calls < min_calls
    assert (snap["state"], snap["calls_in_window"], snap["failure_rate"]) == ("closed", 4, 0.75)
    b.record_failure()  # B's failure trips it, counting A's
    await b.flush()
    with pytest.raises(CircuitOpenError) as err:
        await a.admit("gohighlevel")  # the authoritative check sees it at once
    assert err.value.retry_after == pytest.approx(5.0)
    assert a.state is BreakerState.OPEN  # and so does A's sync view afterwards
    with pytest.raises(CircuitOpenError):
        a.check("gohighlevel")
    assert (await a.refresh())["trips"] == 1


async def test_half_open_probe_is_single_across_processes_and_recovers(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    t = fake_time
    a, b = breakers(stores, connection, t)
    for _ in range(5):
        a.record_failure()
    await a.flush()
    t.advance(5.0)
    await a.admit()  # A takes the probe
    with pytest.raises(CircuitOpenError):
        await b.admit()  # B may not send a second one
    # the probe fails: open again, twice as long, for both
    a.record_failure()
    await a.flush()
    with pytest.raises(CircuitOpenError) as err:
        await b.admit()
    assert err.value.retry_after == pytest.approx(10.0)
    t.advance(10.0)
    await b.admit()  # B's turn to probe; it is cancelled, which frees the probe for A
    b.record_cancelled()
    await b.flush()
    await a.admit()
    a.record_success()  # the probe succeeds: closed for everyone
    await a.flush()
    await b.admit()
    await b.admit()
    snap = await b.refresh()
    assert (snap["state"], snap["consecutive_trips"], snap["trips"]) == ("closed", 0, 2)


async def test_another_process_cancelling_does_not_free_the_probe(
    stores: list[RedisStore], connection: str, fake_time: Any
) -> None:
    a, b = breakers(stores, connection, fake_time)
    for _ in range(5):
        a.record_failure()
    await a.flush()
    fake_time.advance(5.0)
    await a.admit()
    b.record_cancelled()  # B held nothing
    await b.flush()
    with pytest.raises(CircuitOpenError):
        await b.admit()


# -- several processes against the GoHighLevel simulator -----------------------------------------
@pytest.fixture
def small_quota_sandbox() -> Iterator[tuple[Any, Any]]:
    from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
    from crm_mcp.providers.gohighlevel.sandbox.simulator import GHLSandboxConfig

    sim, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=20, burst_interval_ms=2000))
    yield sim, server
    server.stop()


async def test_three_processes_hammering_the_sandbox_get_no_429(
    small_quota_sandbox: tuple[Any, Any], connection: str
) -> None:
    """Three connectors, each with its own Redis client (as three processes), on real time and Redis
    TIME: 70 requests at 20 per 2 s take ~6 s and none is refused."""
    from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN

    sim, server = small_quota_sandbox
    conns = []
    for _ in range(3):
        guards = build_shared_guards(GHL_SPEC, connection, REDIS_URL)
        conns.append(
            GoHighLevelConnector(
                connection,
                token=SANDBOX_TOKEN,
                location_id=SANDBOX_LOCATION_ID,
                base_url=server.url,
                max_attempts=1,
                **guards,
            )
        )
    try:
        await conns[0].ping()  # the first answer teaches the 20 / 2 s limit to all three
        await conns[0].client.limiter.flush()  # type: ignore[attr-defined]

        async def hammer(c: GoHighLevelConnector, n: int) -> None:
            await asyncio.gather(*(c.ping() for _ in range(n)))  # concurrent within a process too

        start = time.monotonic()
        await asyncio.gather(*(hammer(c, 23) for c in conns))
        elapsed = time.monotonic() - start
        assert sim.stats["by_status"] == {"200": 70}
        assert 4.0 < elapsed < 12.0  # held back to the quota, but not much slower than it
        snap = await conns[1].client.limiter.refresh()  # type: ignore[attr-defined]
        assert (snap["limit"], snap["interval_s"]) == (20, 2.0)
        assert conns[2].client.breaker.snapshot()["state"] == "closed"
    finally:
        for c in conns:
            await c.aclose()
            await c.client.limiter.aclose()  # type: ignore[attr-defined]


async def test_runtime_builds_shared_guards_when_redis_url_is_set(
    ghl_sandbox: tuple[Any, Any], settings_factory: Any, connection: str
) -> None:
    from crm_mcp.runtime import Runtime

    settings = settings_factory(ghl_sandbox[1].url, redis_url=REDIS_URL)
    rt = Runtime(settings)
    try:
        client = rt.connector().client  # type: ignore[attr-defined]
        assert isinstance(client.limiter, RedisRateLimiter)
        assert isinstance(client.breaker, RedisCircuitBreaker)
        assert client.limiter.breaker is client.breaker  # admission runs inside acquire()
        await rt.connector().ping()
        snap = await client.limiter.refresh()
        assert snap["shared"] is True and snap["in_window"] >= 1
    finally:
        await rt.aclose()


async def test_a_process_reports_the_quota_every_process_used(
    ghl_sandbox: tuple[Any, Any], connection: str
) -> None:
    """What the health check and the published guards show (`current_snapshot`) is the shared
    state: requests another process sent count, though this one sent none."""
    from crm_mcp.connectors.http import current_snapshot
    from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN
    from crm_mcp.views import quota

    conns = [
        GoHighLevelConnector(
            connection,
            token=SANDBOX_TOKEN,
            location_id=SANDBOX_LOCATION_ID,
            base_url=ghl_sandbox[1].url,
            **build_shared_guards(GHL_SPEC, connection, REDIS_URL),
        )
        for _ in range(2)
    ]
    busy, idle = conns
    try:
        for _ in range(3):
            await busy.ping()
        await busy.client.limiter.flush()  # type: ignore[attr-defined]
        snap = await current_snapshot(idle)
        assert snap is not None
        figures = quota(snap)
        assert figures["burst_limit"] == 100 and figures["burst_remaining"] < 100  # the CRM's count
        assert snap["limiter"]["in_window"] == 3 and snap["breaker"]["calls_in_window"] == 3
    finally:
        for c in conns:
            await c.aclose()
            await c.client.limiter.aclose()  # type: ignore[attr-defined]


_WORKER = """
import asyncio, sys
from crm_mcp.providers.gohighlevel.connector import GHL_SPEC, GoHighLevelConnector
from crm_mcp.connectors.shared_state import build_shared_guards
from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN

async def main(base_url, redis_url, connection, n):
    guards = build_shared_guards(GHL_SPEC, connection, redis_url)
    c = GoHighLevelConnector(connection, token=SANDBOX_TOKEN, location_id=SANDBOX_LOCATION_ID,
                             base_url=base_url, max_attempts=1, **guards)
    try:
        await asyncio.gather(*(c.ping() for _ in range(n)))
    finally:
        await c.aclose()
        await guards["limiter"].aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


@pytest.mark.slow
async def test_separate_os_processes_share_the_quota(
    small_quota_sandbox: tuple[Any, Any], connection: str
) -> None:
    """Three real worker processes (own interpreters, own Redis clients) against one 20 / 2 s quota."""
    import sys

    sim, server = small_quota_sandbox
    warm = build_shared_guards(GHL_SPEC, connection, REDIS_URL)
    from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN

    first = GoHighLevelConnector(
        connection, token=SANDBOX_TOKEN, location_id=SANDBOX_LOCATION_ID, base_url=server.url, **warm
    )
    await first.ping()  # the learned 20 / 2 s limit is in Redis before the workers start
    await first.aclose()
    await warm["limiter"].aclose()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            server.url,
            REDIS_URL,
            connection,
            "20",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = [await p.communicate() for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    assert sim.stats["by_status"] == {"200": 61}

"""RateLimiter on virtual time: window never exceeded, header-driven slow-down, daily budget, 429s."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from crm_mcp.connectors.ratelimit import RateLimiter, safety_margin
from crm_mcp.errors import RateLimitedError
from crm_mcp.providers.gohighlevel.connector import GHL_SPEC

H = {
    "rem": "X-RateLimit-Remaining",
    "max": "X-RateLimit-Max",
    "int": "X-RateLimit-Interval-Milliseconds",
    "day": "X-RateLimit-Daily-Remaining",
    "daylim": "X-RateLimit-Limit-Daily",
}


def limiter(t: Any, **kw: object) -> RateLimiter:
    return RateLimiter.for_spec(GHL_SPEC, clock=t.clock, sleep=t.sleep, wall_clock=t.wall, **kw)  # type: ignore[arg-type]


def max_in_any_window(times: list[float], interval: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - interval:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.anyio
async def test_sequential_burst_never_exceeds_window(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t, max_wait_s=60)
    sent = []
    for _ in range(350):
        await rl.acquire()
        sent.append(t.now)
    # the provider's limit is the bound (our own traffic needs no reserve: see the module docstring)
    assert max_in_any_window(sent, 10.0) <= 100
    # and it uses the whole quota: 350 requests at 100 per 10 s take just over 30 s of virtual time
    assert sent[-1] - sent[0] < 31


@pytest.mark.anyio
async def test_learns_window_from_headers(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t)
    rl.observe({H["max"]: "20", H["int"]: "2000", H["rem"]: "20"})
    assert (rl.limit, rl.interval_s) == (20, 2.0)
    sent = []
    for _ in range(100):
        await rl.acquire()
        sent.append(t.now)
    assert max_in_any_window(sent, 2.0) <= 20


@pytest.mark.anyio
async def test_server_remaining_zero_waits_for_the_window_to_roll(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t)
    rl.observe({H["max"]: "100", H["int"]: "10000", H["rem"]: "0"})
    start = t.now
    await rl.acquire()
    assert t.now - start == pytest.approx(10.0)


@pytest.mark.anyio
async def test_snapshot_counts_sends_since_the_crms_count_and_forgets_it_with_its_window(
    fake_time: Any,
) -> None:
    """What the health check reports as burst_remaining: the CRM's count less our sends since;
    once its window is over the count says nothing (a 0 would report the quota used up forever)."""
    t = fake_time
    rl = limiter(t)
    rl.observe({H["max"]: "100", H["int"]: "10000", H["rem"]: "40"})
    for _ in range(3):
        await rl.acquire()
    assert rl.snapshot()["server_remaining"] == 37
    t.advance(10.0)
    assert rl.snapshot()["server_remaining"] is None


@pytest.mark.anyio
async def test_low_remaining_paces_evenly_before_the_wall(fake_time: Any) -> None:
    """Another process used most of the window: we spread what is left instead of bursting."""
    t = fake_time
    rl = limiter(t)
    rl.observe({H["max"]: "100", H["int"]: "10000", H["rem"]: "10"})
    obs = t.now
    sent = []
    for _ in range(12):
        await rl.acquire()
        sent.append(t.now)
    in_server_window = [s for s in sent if s < obs + 10.0]
    assert len(in_server_window) <= 10 - safety_margin(100)
    gaps = [b - a for a, b in itertools.pairwise(in_server_window)]
    assert gaps and min(gaps) > 0.5  # paced, not a burst


@pytest.mark.anyio
async def test_plenty_remaining_does_not_slow_down(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t)
    rl.observe({H["rem"]: "90"})
    for _ in range(10):
        await rl.acquire()
    assert t.sleeps == []


@pytest.mark.anyio
async def test_daily_exhaustion_raises_with_retry_after_instead_of_waiting(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t, max_wait_s=30)
    rl.observe({H["day"]: "0", H["daylim"]: "200000"})
    with pytest.raises(RateLimitedError) as info:
        await rl.acquire()
    assert t.sleeps == []
    # no reset time sent: looked at again ten minutes after it read 0 (not at a guessed midnight)
    assert info.value.retry_after == pytest.approx(GHL_SPEC.daily_recheck_s, abs=0.01)
    assert info.value.retry_after is not None and info.value.retry_after > 30


@pytest.mark.anyio
async def test_daily_budget_counts_down_locally_between_observations(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t)
    rl.observe({H["day"]: "2"})
    await rl.acquire()
    await rl.acquire()
    with pytest.raises(RateLimitedError):
        await rl.acquire()


@pytest.mark.anyio
async def test_daily_reset_epoch_header_is_used_when_sent(fake_time: Any) -> None:
    t = fake_time
    rl = RateLimiter(
        clock=t.clock, sleep=t.sleep, wall_clock=t.wall, daily_remaining_header="d", reset_epoch_header="r"
    )
    rl.observe({"d": "0", "r": str(int(t.wall()) + 20)})
    await rl.acquire()  # 20 s is under max_wait_s: wait for the reset
    assert t.sleeps == [pytest.approx(20.0)]


@pytest.mark.anyio
async def test_429_penalty_blocks_and_stragglers_do_not_retrigger(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t)
    rl.note_429(3.0)
    t.advance(1.0)
    rl.note_429(None)  # in-flight straggler: no new window
    start = t.now
    await rl.acquire()
    assert t.now - start == pytest.approx(2.0)


@pytest.mark.anyio
async def test_429_without_retry_after_pauses_one_interval(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t)
    rl.note_429(None)
    start = t.now
    await rl.acquire()
    assert t.now - start == pytest.approx(10.0)


@pytest.mark.anyio
async def test_penalty_longer_than_max_wait_raises(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t, max_wait_s=5)
    rl.note_429(60.0)
    with pytest.raises(RateLimitedError) as info:
        await rl.acquire()
    assert info.value.retry_after == pytest.approx(60.0)
    assert t.sleeps == []


def test_penalty_never_shortens(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t)
    rl.penalty(t.now + 10)
    rl.penalty(t.now + 2)
    assert rl.snapshot()["blocked_for_s"] == pytest.approx(10.0)


def test_snapshot_shape(fake_time: Any) -> None:
    t = fake_time
    snap = limiter(t).snapshot()
    assert {"limit", "interval_s", "in_window", "daily_remaining", "blocked_for_s"} <= set(snap)


def test_safety_margin() -> None:
    assert safety_margin(100) == 5
    assert safety_margin(20) == 1
    assert safety_margin(1) == 0


@pytest.mark.anyio
async def test_a_spent_daily_budget_is_looked_at_again_after_the_recheck(fake_time: Any) -> None:
    t = fake_time
    rl = limiter(t, max_wait_s=10**6)
    rl.observe({H["day"]: "0"})
    start = t.now
    await rl.acquire()  # allowed to wait: one request looks again after the recheck
    assert t.now - start == pytest.approx(600.0)
    assert rl.snapshot()["daily_remaining"] is None


@pytest.mark.anyio
async def test_zohos_spent_credits_are_looked_at_again_after_the_recheck_not_at_midnight(
    fake_time: Any,
) -> None:
    from crm_mcp.providers.zoho.spec import ZOHO_SPEC

    t = fake_time
    t.advance(3600)  # 01:00 UTC: midnight is 23 h away
    rl = RateLimiter.for_spec(ZOHO_SPEC, clock=t.clock, sleep=t.sleep, wall_clock=t.wall, max_wait_s=30)
    rl.observe({"X-API-CREDITS-REMAINING": "0"})  # Zoho's rolling 24 h credits are spent
    with pytest.raises(RateLimitedError) as info:
        await rl.acquire()
    assert info.value.retry_after == pytest.approx(600.0, abs=0.01)  # not 23 h
    t.advance(300)
    with pytest.raises(RateLimitedError) as info:
        await rl.acquire()
    assert info.value.retry_after == pytest.approx(300.0, abs=0.01)  # counted from when it read 0
    t.advance(300)
    await rl.acquire()  # one request looks again
    rl.observe({"X-API-CREDITS-REMAINING": "0"})  # still spent: another ten minutes
    with pytest.raises(RateLimitedError) as info:
        await rl.acquire()
    assert info.value.retry_after == pytest.approx(600.0, abs=0.01)
    assert t.sleeps == []

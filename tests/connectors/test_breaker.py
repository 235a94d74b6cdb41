"""CircuitBreaker on virtual time: rate over a window, min calls, half-open probe, growing open time."""

from __future__ import annotations

from typing import Any

import pytest

from crm_mcp.connectors.breaker import BreakerState, CircuitBreaker
from crm_mcp.errors import CircuitOpenError


def breaker(t: Any, **kw: Any) -> CircuitBreaker:
    return CircuitBreaker("gohighlevel:test", clock=t.clock, **kw)


def trip(b: CircuitBreaker, n: int = 5) -> None:
    for _ in range(n):
        assert b.allow()
        b.record_failure()


def test_min_calls_before_tripping(fake_time: Any) -> None:
    b = breaker(fake_time)
    trip(b, 4)
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN


def test_failure_rate_below_threshold_stays_closed(fake_time: Any) -> None:
    b = breaker(fake_time)
    for i in range(20):
        b.record_failure() if i % 3 == 0 else b.record_success()
    assert b.state is BreakerState.CLOSED
    assert 0.3 < b.failure_rate() < 0.4


def test_old_failures_fall_out_of_the_window(fake_time: Any) -> None:
    b = breaker(fake_time)
    trip(b, 4)
    fake_time.advance(61)
    b.record_failure()
    assert b.state is BreakerState.CLOSED
    assert b.snapshot()["calls_in_window"] == 1


def test_open_refuses_then_half_open_allows_one_probe_then_closes(fake_time: Any) -> None:
    b = breaker(fake_time)
    trip(b)
    with pytest.raises(CircuitOpenError) as info:
        b.check("gohighlevel")
    assert info.value.retry_after == pytest.approx(5.0)
    assert info.value.provider == "gohighlevel"
    fake_time.advance(5.0)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # everyone else waits for it
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert b.allow()


def test_open_time_grows_exponentially_and_caps(fake_time: Any) -> None:
    b = breaker(fake_time)
    trip(b)
    opens = []
    for _ in range(9):
        opens.append(b.snapshot()["open_for_s"])
        fake_time.advance(opens[-1])
        assert b.allow()  # probe
        b.record_failure()  # probe fails -> open again, longer
    assert opens[:7] == [5, 10, 20, 40, 80, 160, 300]
    assert opens[-1] == 300
    assert b.snapshot()["trips"] == 10


def test_success_resets_the_exponential_sequence(fake_time: Any) -> None:
    b = breaker(fake_time)
    trip(b)
    fake_time.advance(5)
    b.allow()
    b.record_failure()
    assert b.snapshot()["open_for_s"] == 10
    fake_time.advance(10)
    b.allow()
    b.record_success()
    trip(b)
    assert b.snapshot()["open_for_s"] == 5


def test_cancelled_probe_frees_the_slot(fake_time: Any) -> None:
    b = breaker(fake_time)
    trip(b)
    fake_time.advance(5)
    assert b.allow()
    b.record_cancelled()
    assert b.allow()


def test_lost_probe_times_out(fake_time: Any) -> None:
    b = breaker(fake_time, probe_timeout_s=30)
    trip(b)
    fake_time.advance(5)
    assert b.allow()
    assert not b.allow()
    fake_time.advance(30)
    assert b.allow()


def test_stragglers_while_open_do_not_extend(fake_time: Any) -> None:
    b = breaker(fake_time)
    trip(b)
    b.record_failure()
    b.record_success()
    assert b.snapshot()["open_for_s"] == 5
    assert b.trips == 1


def test_snapshot(fake_time: Any) -> None:
    b = breaker(fake_time)
    snap = b.snapshot()
    assert snap["state"] == "closed"
    assert {"state", "failure_rate", "open_until", "trips"} <= set(snap)
    trip(b)
    snap = b.snapshot()
    assert snap["state"] == "open" and snap["open_until"] == fake_time.now + 5 and snap["trips"] == 1

"""Circuit breaker per (provider, connection), tuned for low-rate CRM traffic.

Why hand-written: `purgatory` (evaluated first, per DESIGN §2) opens after N *consecutive* failures
and stays open for a fixed TTL. A CRM connection sees a few calls a minute, so we want a failure
*rate* over a time window with a minimum number of calls (two failures out of two calls at 3 a.m.
should not take the integration down, nor should one success hide 9 failures in 10), and an open
time that grows while the provider stays down (5 s, 10 s, 20 s ... capped at 5 min) so a dead API is
not hammered by probes. Neither is expressible in purgatory.

States: CLOSED (calls flow, outcomes recorded) -> OPEN (calls refused until `open_until`) ->
HALF_OPEN (exactly one probe call allowed) -> CLOSED on probe success / OPEN again (longer) on
failure. Only provider-health failures count (5xx, 408, 429, timeouts, resets); other 4xx mean the
provider is up and answering, so they count as successes here.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from crm_mcp.errors import CircuitOpenError


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def open_time(base_open_s: float, max_open_s: float, consecutive_trips: int) -> float:
    """Open duration of the n-th consecutive trip: base * 2^(n-1), capped."""
    return min(max_open_s, base_open_s * 2 ** max(0, consecutive_trips - 1))


class CircuitBreaker:
    def __init__(
        self,
        name: str = "",
        *,
        window_s: float = 60.0,
        min_calls: int = 5,
        failure_rate_threshold: float = 0.5,
        base_open_s: float = 5.0,
        max_open_s: float = 300.0,
        probe_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.window_s = window_s
        self.min_calls = min_calls
        self.failure_rate_threshold = failure_rate_threshold
        self.base_open_s = base_open_s
        self.max_open_s = max_open_s
        self.probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed)
        self._state = BreakerState.CLOSED
        self._open_until = 0.0
        self._consecutive_trips = 0
        self.trips = 0
        self._probe_started: float | None = None

    # -- state ------------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._state = BreakerState.HALF_OPEN
            self._probe_started = None
        return self._state

    @property
    def open_until(self) -> float | None:
        return self._open_until if self.state is BreakerState.OPEN else None

    def _prune(self, now: float) -> None:
        while self._calls and self._calls[0][0] <= now - self.window_s:
            self._calls.popleft()

    def failure_rate(self) -> float:
        self._prune(self._clock())
        if not self._calls:
            return 0.0
        return sum(1 for _, failed in self._calls if failed) / len(self._calls)

    def open_time_for(self, consecutive_trips: int) -> float:
        return open_time(self.base_open_s, self.max_open_s, consecutive_trips)

    # -- call protocol ----------------------------------------------------------------------
    def allow(self) -> bool:
        """True if a call may go out now. In HALF_OPEN this claims the single probe slot."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        now = self._clock()
        if self._probe_started is None or now - self._probe_started >= self.probe_timeout_s:
            self._probe_started = now
            return True
        return False

    def check(self, provider: str = "") -> None:
        """`allow()` or raise CircuitOpenError carrying when to come back."""
        if self.allow():
            return
        now = self._clock()
        until = self._open_until if self._state is BreakerState.OPEN else now + 1.0
        wait = max(0.0, until - now)
        raise CircuitOpenError(
            f"circuit open for {self.name or provider}: provider failing, retry in {wait:.1f}s",
            until=until,
            retry_after=wait,
            provider=provider,
        )

    def record_success(self) -> None:
        now = self._clock()
        if self.state is BreakerState.HALF_OPEN:
            self._close()
            return
        self._calls.append((now, False))
        self._prune(now)

    def record_failure(self) -> None:
        now = self._clock()
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._trip(now)
            return
        if state is BreakerState.OPEN:
            return  # a straggler from before the trip
        self._calls.append((now, True))
        self._prune(now)
        if len(self._calls) >= self.min_calls and self.failure_rate() >= self.failure_rate_threshold:
            self._trip(now)

    def record_cancelled(self) -> None:
        """The call ended without an outcome (cancelled): free the probe slot if it held it."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_started = None

    def _trip(self, now: float) -> None:
        self._consecutive_trips += 1
        self.trips += 1
        self._state = BreakerState.OPEN
        self._open_until = now + self.open_time_for(self._consecutive_trips)
        self._probe_started = None
        self._calls.clear()

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive_trips = 0
        self._probe_started = None
        self._calls.clear()

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        now = self._clock()
        return {
            "state": state.value,
            "failure_rate": round(self.failure_rate(), 3),
            "calls_in_window": len(self._calls),
            "open_until": self._open_until if state is BreakerState.OPEN else None,
            "open_for_s": round(max(0.0, self._open_until - now), 3) if state is BreakerState.OPEN else 0.0,
            "trips": self.trips,
            "consecutive_trips": self._consecutive_trips,
        }

"""Rate limits and request counters of the GoHighLevel simulator.

The limiter reproduces GHL's per-location burst window and daily budget (and the five
``X-RateLimit-*`` headers it reports them with) on an injected clock; ``Stats`` counts requests so
benchmarks and tests can assert how many calls a client really made.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol


class LimitsConfig(Protocol):
    burst_max: int
    burst_interval_ms: int
    daily_limit: int


class RateLimiter:
    """Per-location sliding window (burst) plus a daily counter, on an injected clock.

    GHL documents 100 requests / 10 s and 200k / day per app and location, and reports both on
    every response; a rejected request does not consume budget.
    """

    def __init__(self, config: LimitsConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
            self._daily.clear()

    def _state(self, location: str, now: float) -> tuple[deque[float], int]:
        window = self._config.burst_interval_ms / 1000
        hits = self._hits.setdefault(location, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        day = int(now // 86_400)
        day_idx, used = self._daily.get(location, (day, 0))
        if day_idx != day:
            used = 0
        self._daily[location] = (day, used)
        return hits, used

    def _headers(self, burst_used: int, daily_used: int) -> list[tuple[bytes, bytes]]:
        c = self._config
        values = {
            "x-ratelimit-limit-daily": c.daily_limit,
            "x-ratelimit-daily-remaining": max(0, c.daily_limit - daily_used),
            "x-ratelimit-interval-milliseconds": c.burst_interval_ms,
            "x-ratelimit-max": c.burst_max,
            "x-ratelimit-remaining": max(0, c.burst_max - burst_used),
        }
        return [(k.encode(), str(v).encode()) for k, v in values.items()]

    def peek(self, location: str) -> list[tuple[bytes, bytes]]:
        with self._lock:
            hits, used = self._state(location, self._clock())
            return self._headers(len(hits), used)

    def hit(self, location: str) -> tuple[bool, list[tuple[bytes, bytes]]]:
        with self._lock:
            now = self._clock()
            hits, used = self._state(location, now)
            if len(hits) >= self._config.burst_max or used >= self._config.daily_limit:
                return False, self._headers(self._config.burst_max, used)
            hits.append(now)
            self._daily[location] = (int(now // 86_400), used + 1)
            return True, self._headers(len(hits), used + 1)


class Stats:
    """Request counters for benchmarks and assertions (control endpoints are not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.rate_limited = 0
        self.faults_injected = 0
        self.by_status: dict[str, int] = {}
        self.by_route: dict[str, int] = {}

    def record(self, route: str, status: int | None, faulted: bool = False) -> None:
        key = "reset" if status is None else str(status)
        with self._lock:
            self.total += 1
            self.by_status[key] = self.by_status.get(key, 0) + 1
            self.by_route[route] = self.by_route.get(route, 0) + 1
            self.rate_limited += status == 429
            self.faults_injected += faulted

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_status": dict(self.by_status),
                "rate_limited": self.rate_limited,
                "faults_injected": self.faults_injected,
                "by_route": dict(self.by_route),
            }

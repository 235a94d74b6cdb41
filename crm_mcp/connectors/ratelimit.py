"""Per-connection rate limiter that waits for a slot instead of dropping work.

Why hand-written: the `limits` package answers "is this hit allowed now?" for fixed strategies. We
need "*when* is the next allowed slot?" (so callers sleep exactly that long, or hand the work back
to the outbox with a retry_after when it is too long), plus limits learned at run time from the
provider's headers (remaining / max / interval / daily remaining / reset) and a penalty window
after a 429. That is a small sliding-window log with reservations, which this module is.

How a slot is chosen (all on the injected monotonic clock):
- sliding window: at most `capacity = max - safety_margin` reservations in any `interval` span;
- server view: after a response says `remaining=R`, spend at most `R - margin` more until that
  window has surely rolled over, spreading them evenly (so we slow down *before* the wall);
- daily budget: once the provider's daily remaining is spent, the next slot is the daily reset;
- penalty: after a 429 nobody sends until the penalty ends.
A slot further away than `max_wait_s` raises `RateLimitedError(retry_after=...)` instead.

Shared state across processes (Redis) is a later `RateLimiterLike` implementation; the
`ResilientClient` only depends on that protocol.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from crm_mcp.errors import RateLimitedError

from .base import ProviderSpec

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


class RateLimiterLike(Protocol):
    """What the HTTP client needs from a limiter (in-memory today, Redis-shared later)."""

    async def acquire(self) -> None: ...
    def observe(self, headers: Mapping[str, str]) -> None: ...
    def note_429(self, retry_after: float | None) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    if not name:
        return None
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


def next_utc_midnight(wall_now: float) -> float:
    """Epoch seconds of the next 00:00 UTC (default daily reset when the provider sends none)."""
    return (math.floor(wall_now / 86400.0) + 1) * 86400.0


def safety_margin(limit: int) -> int:
    """Requests kept in reserve per window: 5 % of the limit, at least 1, never the whole limit."""
    return min(max(1, math.ceil(limit * 0.05)), max(limit - 1, 0))


class RateLimiter:
    """Burst window + daily budget + 429 penalty for one connection. Not thread-safe; one event loop."""

    def __init__(
        self,
        *,
        limit: int = 100,
        interval_s: float = 10.0,
        daily_limit: int | None = None,
        max_wait_s: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Clock = time.time,
        remaining_header: str = "",
        limit_header: str = "",
        interval_ms_header: str = "",
        daily_remaining_header: str = "",
        daily_limit_header: str = "",
        reset_epoch_header: str = "",
    ) -> None:
        self.limit = limit
        self.interval_s = interval_s
        self.daily_limit = daily_limit
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._sleep = sleep
        self._wall = wall_clock
        self._headers = (
            remaining_header,
            limit_header,
            interval_ms_header,
            daily_remaining_header,
            daily_limit_header,
            reset_epoch_header,
        )
        self._log: deque[float] = deque()  # reserved send times, non-decreasing
        self._blocked_until = 0.0
        # last server view of the burst window: (observed at, remaining, sends since)
        self._server_at: float | None = None
        self._server_remaining = 0
        self._sent_since_obs = 0
        # daily budget: remaining as of last observation minus what we sent since; reset epoch
        self._daily_remaining: int | None = None
        self._daily_reset_epoch: float | None = None
        self.waits = 0
        self.waited_s = 0.0

    @classmethod
    def for_spec(cls, spec: ProviderSpec, **kw: Any) -> RateLimiter:
        """A limiter with the provider's documented defaults and header names."""
        return cls(
            limit=spec.burst_limit,
            interval_s=spec.burst_interval_s,
            daily_limit=spec.daily_limit,
            remaining_header=spec.remaining_header,
            limit_header=spec.limit_header,
            interval_ms_header=spec.interval_ms_header,
            daily_remaining_header=spec.daily_remaining_header,
            daily_limit_header=spec.daily_limit_header,
            reset_epoch_header=spec.reset_epoch_header,
            **kw,
        )

    @property
    def capacity(self) -> int:
        return max(1, self.limit - safety_margin(self.limit))

    # -- decisions -------------------------------------------------------------------------
    def next_slot(self, now: float) -> float:
        """Earliest time (clock seconds) the next request may be sent. Pure w.r.t. state."""
        slot = max(now, self._blocked_until)
        if self._log:
            slot = max(slot, self._log[-1])
        if len(self._log) >= self.capacity:
            slot = max(slot, self._log[-self.capacity] + self.interval_s)
        slot = max(slot, self._server_slot(now))
        daily = self._daily_slot(now)
        return max(slot, daily)

    def _server_slot(self, now: float) -> float:
        if self._server_at is None:
            return now
        window_end = self._server_at + self.interval_s
        if now >= window_end:
            return now  # that window has rolled over; the local log governs again
        budget = self._server_remaining - safety_margin(self.limit) - self._sent_since_obs
        if budget <= 0:
            return window_end
        low_water = max(2, self.limit // 4)
        if self._server_remaining - self._sent_since_obs > low_water or not self._log:
            return now
        # pace the remaining budget evenly over what is left of the server's window
        spacing = (window_end - now) / (budget + 1)
        return self._log[-1] + spacing

    def _daily_slot(self, now: float) -> float:
        if self._daily_remaining is None or self._daily_remaining > 0:
            return now
        wall = self._wall()
        reset = self._daily_reset_epoch
        if reset is None or reset <= wall:
            reset = next_utc_midnight(wall)
        return now + (reset - wall)

    # -- effects ---------------------------------------------------------------------------
    async def acquire(self) -> None:
        """Reserve the next slot and sleep until it; raise RateLimitedError if it is too far."""
        now = self._clock()
        while self._log and self._log[0] <= now - self.interval_s:
            self._log.popleft()
        slot = self.next_slot(now)
        wait = slot - now
        if wait > self.max_wait_s:
            raise RateLimitedError(
                f"rate limit: next request slot is {wait:.1f}s away", retry_after=round(wait, 3)
            )
        self._log.append(slot)
        self._sent_since_obs += 1
        if self._daily_remaining is not None:
            self._daily_remaining -= 1
        if wait > 0:
            self.waits += 1
            self.waited_s += wait
            await self._sleep(wait)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn limits from a response's headers (any subset; unknown names are ignored)."""
        rem_h, max_h, int_h, day_rem_h, day_lim_h, reset_h = self._headers
        limit = _int_header(headers, max_h)
        if limit and limit > 0:
            self.limit = limit
        interval_ms = _int_header(headers, int_h)
        if interval_ms and interval_ms > 0:
            self.interval_s = interval_ms / 1000.0
        remaining = _int_header(headers, rem_h)
        if remaining is not None:
            self._server_at = self._clock()
            self._server_remaining = remaining
            self._sent_since_obs = 0
        daily_limit = _int_header(headers, day_lim_h)
        if daily_limit:
            self.daily_limit = daily_limit
        daily_remaining = _int_header(headers, day_rem_h)
        if daily_remaining is not None:
            self._daily_remaining = daily_remaining
        reset = _int_header(headers, reset_h)
        if reset:
            self._daily_reset_epoch = reset / 1000.0 if reset > 10**11 else float(reset)

    def note_429(self, retry_after: float | None) -> None:
        """Block every caller until the provider's penalty is over.

        A 429 that arrives while a penalty is already running came from a request sent before it:
        it does not restart the window (that would stretch the pause with every straggler); only an
        explicit, later Retry-After extends it.
        """
        now = self._clock()
        if now < self._blocked_until:
            if retry_after is not None:
                self._blocked_until = max(self._blocked_until, now + retry_after)
            return
        pause = retry_after if retry_after is not None else self.interval_s
        self.penalty(now + pause)

    def penalty(self, until: float) -> None:
        """Nobody sends before `until` (clock seconds). Never shortens an existing penalty."""
        self._blocked_until = max(self._blocked_until, until)

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        in_window = sum(1 for t in self._log if t > now - self.interval_s)
        return {
            "limit": self.limit,
            "interval_s": self.interval_s,
            "in_window": in_window,
            "server_remaining": self._server_remaining if self._server_at is not None else None,
            "daily_limit": self.daily_limit,
            "daily_remaining": self._daily_remaining,
            "blocked_for_s": round(max(0.0, self._blocked_until - now), 3),
            "waits": self.waits,
            "waited_s": round(self.waited_s, 3),
        }

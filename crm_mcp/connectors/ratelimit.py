"""Per-connection rate limiter that waits for a slot instead of dropping work.

Why hand-written: the `limits` package answers "is this hit allowed now?" for fixed strategies. We
need "*when* is the next allowed slot?" (so callers sleep exactly that long, or hand the work back
to the outbox with a retry_after when it is too long), plus limits learned at run time from the
provider's headers (remaining / max / interval / daily remaining / reset) and a penalty window
after a 429. That is a small sliding-window log plus a FIFO queue of waiters, which this module is.

How a slot is chosen (all on the injected monotonic clock):
- sliding window: at most `limit` sends in any `interval` span. A request occupies the window
  from its send until it is answered and from its answer on (see `_complete`), which is never
  earlier than the moment the server counted it, so our window frees no sooner than the server's
  and no safety margin is spent on our own traffic;
- server view: after a response says `remaining=R`, compare it with what our own log left. If the
  server counts more than we sent (another client spends the same quota), spend at most
  `R - margin` more until that window has surely rolled over, spreading them evenly (so we slow
  down *before* the wall); if it agrees with our count, the log already keeps us under the limit;
- daily budget: once the provider's daily remaining is spent, the next slot is the provider's
  reset epoch when it sends one, else `daily_recheck_s` after the budget read 0, when one request
  looks again (resets come at times the providers do not announce);
- penalty: after a 429 nobody sends until the penalty ends.
A slot further away than `max_wait_s` raises `RateLimitedError(retry_after=...)` instead.

Shared state across processes (Redis) is a later `RateLimiterLike` implementation; the
`ResilientClient` only depends on that protocol.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import statistics
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


def int_header(headers: Mapping[str, str], name: str) -> int | None:
    """The integer value of header `name` (None when unnamed, absent or unreadable)."""
    if not name:
        return None
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


class LatencyMeter:
    """How long the CRM takes to answer: the median of the last SAMPLES send-to-answer times.

    A median, not a moving average: the first answers of a connection come over new HTTP
    connections, often while every other connection warms up too, and take several times the
    CRM's real latency. An average starts from them and carries them for dozens of answers, and a
    cap derived from it lets a backlog take many more slots than the limit can keep busy (the
    first claim beside a backlog is made right then); a median drops them once most answers are
    ordinary, and still follows a real change of the CRM's latency within SAMPLES / 2 answers."""

    SAMPLES = 16

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=self.SAMPLES)
        self.latency_s: float | None = None

    def add(self, took: float) -> None:
        self._samples.append(max(0.0, took))
        self.latency_s = statistics.median(self._samples)

    def useful_concurrency(self, limit: int, interval_s: float) -> int | None:
        """How many requests in flight at once this limit can keep busy: its rate times the
        latency, doubled for headroom (at least 2). None until a request has been answered.
        Operations beyond it would only wait in the limiter while holding a worker's slot."""
        if self.latency_s is None or interval_s <= 0:
            return None
        return max(2, math.ceil(limit / interval_s * self.latency_s * 2 - 1e-9))


def spec_limits(spec: ProviderSpec) -> dict[str, Any]:
    """A limiter's keyword arguments for the provider's documented limits and header names."""
    return {
        "limit": spec.burst_limit,
        "interval_s": spec.burst_interval_s,
        "daily_limit": spec.daily_limit,
        "daily_recheck_s": spec.daily_recheck_s,
        "remaining_header": spec.remaining_header,
        "limit_header": spec.limit_header,
        "interval_ms_header": spec.interval_ms_header,
        "daily_remaining_header": spec.daily_remaining_header,
        "daily_limit_header": spec.daily_limit_header,
        "reset_epoch_header": spec.reset_epoch_header,
    }


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
        daily_recheck_s: float = 600.0,
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
        self.daily_recheck_s = daily_recheck_s
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
        self._lock = asyncio.Lock()
        self._log: list[float] = []  # sorted: send time, or receipt time once answered
        self._inflight: deque[float] = deque()  # send times of requests not answered yet
        self._latency = LatencyMeter()
        self._last_send = 0.0
        self._blocked_until = 0.0
        # last server view of the burst window: (observed at, remaining, sends since)
        self._server_at: float | None = None
        self._server_remaining = 0
        self._sent_since_obs = 0
        self._own_left_at_obs = 0  # what our own log left in the window when the server spoke
        # daily budget: remaining as of last observation minus what we sent since; reset epoch
        self._daily_remaining: int | None = None
        self._daily_reset_epoch: float | None = None
        self._daily_seen_wall = 0.0
        self.waits = 0
        self.waited_s = 0.0

    @classmethod
    def for_spec(cls, spec: ProviderSpec, **kw: Any) -> RateLimiter:
        """A limiter with the provider's documented defaults and header names."""
        return cls(**spec_limits(spec), **kw)

    @property
    def capacity(self) -> int:
        return max(1, self.limit)

    # -- decisions -------------------------------------------------------------------------
    def next_slot(self, now: float) -> float:
        """Earliest time (clock seconds) the next request may be sent. Pure w.r.t. state."""
        slot = max(now, self._blocked_until)
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
        server_left = self._server_remaining - self._sent_since_obs
        if server_left >= self._own_left_at_obs - self._sent_since_obs:
            return now  # the server counts what we sent: our own window log governs
        budget = server_left - safety_margin(self.limit)
        if budget <= 0:
            return window_end
        low_water = max(2, self.limit // 4)
        if server_left > low_water:
            return now
        # pace the remaining budget evenly over what is left of the server's window
        spacing = (window_end - now) / (budget + 1)
        return self._last_send + spacing

    def _daily_slot(self, now: float) -> float:
        if self._daily_remaining is None or self._daily_remaining > 0:
            return now
        wall = self._wall()
        reset = self._daily_reset_epoch
        if reset is None or reset <= wall:
            reset = max(wall, self._unannounced_reset())
        return now + (reset - wall)

    def _unannounced_reset(self) -> float:
        """When a budget that read 0 with no reset epoch sent is looked at again."""
        return self._daily_seen_wall + self.daily_recheck_s

    def _roll_day(self) -> None:
        """Past the daily reset the budget is unknown again until the next response says."""
        if self._daily_remaining is None:
            return
        reset = self._daily_reset_epoch or self._unannounced_reset()
        if self._wall() >= reset:
            self._daily_remaining = None
            self._daily_reset_epoch = None

    # -- effects ---------------------------------------------------------------------------
    async def acquire(self) -> None:
        """Wait for the next slot, then take it; raise RateLimitedError if it is too far away.

        Waiters queue on a lock (FIFO) and re-check after every sleep, so limits learned from
        responses that arrived meanwhile (a lower remaining, a 429 penalty) still apply to them.
        """
        start = self._clock()
        async with self._lock:
            while True:
                now = self._clock()
                self._prune(now)
                self._roll_day()
                wait = self.next_slot(now) - now
                if wait <= 0:
                    self._take(now)
                    return
                if now + wait - start > self.max_wait_s:
                    raise RateLimitedError(
                        f"rate limit: next request slot is {wait:.1f}s away", retry_after=round(wait, 3)
                    )
                self.waits += 1
                self.waited_s += wait
                await self._sleep(wait)

    def _prune(self, now: float) -> None:
        cut = bisect.bisect_right(self._log, now - self.interval_s)
        if cut:
            del self._log[:cut]

    def _take(self, now: float) -> None:
        bisect.insort(self._log, now)
        self._inflight.append(now)
        self._last_send = now
        self._sent_since_obs += 1
        if self._daily_remaining is not None:
            self._daily_remaining -= 1

    def _complete(self) -> None:
        """A request came back: it occupies the window from *now*, not from when it was sent.

        The server counts a request when it arrives, which is somewhere between our send and our
        receipt of the answer; counting from receipt keeps a burst of slow, concurrent requests
        from being re-sent a whole window later while the server still counts the stragglers.
        """
        if not self._inflight:
            return
        sent, now = self._inflight.popleft(), self._clock()
        self._latency.add(now - sent)
        i = bisect.bisect_left(self._log, sent)
        if i < len(self._log) and self._log[i] == sent:
            del self._log[i]
        bisect.insort(self._log, now)

    def useful_concurrency(self) -> int | None:
        """See `LatencyMeter.useful_concurrency` (with the limit as learned)."""
        return self._latency.useful_concurrency(self.limit, self.interval_s)

    def observe(self, headers: Mapping[str, str]) -> None:
        """A response (or a failed exchange, with no headers) came back: learn limits from it."""
        self._complete()
        rem_h, max_h, int_h, day_rem_h, day_lim_h, reset_h = self._headers
        limit = int_header(headers, max_h)
        if limit and limit > 0:
            self.limit = limit
        interval_ms = int_header(headers, int_h)
        if interval_ms and interval_ms > 0:
            self.interval_s = interval_ms / 1000.0
        remaining = int_header(headers, rem_h)
        if remaining is not None:
            now = self._clock()
            fresh = self._server_at is not None and now < self._server_at + self.interval_s
            if not fresh or remaining < self._server_remaining - self._sent_since_obs:
                # a response that overtook a slower one can only tighten a fresh view, not loosen it
                self._server_at = now
                self._server_remaining = remaining
                self._sent_since_obs = 0
                self._prune(now)
                self._own_left_at_obs = self.limit - len(self._log)
        daily_limit = int_header(headers, day_lim_h)
        if daily_limit:
            self.daily_limit = daily_limit
        daily_remaining = int_header(headers, day_rem_h)
        if daily_remaining is not None:
            self._daily_remaining = daily_remaining
            self._daily_seen_wall = self._wall()
        reset = int_header(headers, reset_h)
        if reset:
            self._daily_reset_epoch = reset / 1000.0 if reset > 10**11 else float(reset)

    def note_429(self, retry_after: float | None) -> None:
        """Block every caller until the provider's penalty is over.

        A 429 that arrives while a penalty is already running came from a request sent before it:
        it does not restart the window (that would stretch the pause with every straggler); only an
        explicit, later Retry-After extends it.
        """
        now = self._clock()
        if retry_after is not None:
            # an explicit Retry-After is more precise than the "remaining: 0" sent with it
            self._server_at = None
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
        # the CRM's last count less what was sent since, while its window lasts (then: unknown)
        fresh = self._server_at is not None and now < self._server_at + self.interval_s
        return {
            "limit": self.limit,
            "interval_s": self.interval_s,
            "in_window": in_window,
            "server_remaining": max(0, self._server_remaining - self._sent_since_obs) if fresh else None,
            "daily_limit": self.daily_limit,
            "daily_remaining": self._daily_remaining,
            "blocked_for_s": round(max(0.0, self._blocked_until - now), 3),
            "waits": self.waits,
            "waited_s": round(self.waited_s, 3),
        }

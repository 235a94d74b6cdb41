"""Rate-limit budget and circuit-breaker state shared by every process through Redis.

When `CRM_MCP_REDIS_URL` is set, all servers and workers talking to one CRM connection draw on one
sliding window of sends and one breaker, so together they stay under the provider's limit and all
stop calling a failing provider at once. The decisions are the in-memory ones (`ratelimit.py`,
`breaker.py`) moved into Lua scripts, so each decision *and* its effect is one atomic step on the
Redis server: two processes can never both take the last slot or both claim the half-open probe.

Clock: timestamps come from Redis `TIME` inside the scripts (all processes compare times on one
clock, whatever their local clocks say; Redis >= 5 replicates script effects, so TIME is allowed
next to writes). Tests may inject `clock=` (then its value is sent with every call instead).
Waits are returned as durations and slept on the local, injected `sleep`.

Sync methods of the protocols (`observe`, `note_429`, `record_*`) cannot await Redis: they hand
the update to the store, which sends every call made while a round trip is under way together in
the next one, a pipeline run in order (`RedisStore.submit`). So `acquire()` / `admit()` run after
this process's earlier updates (a process always sends under its own latest knowledge), other
processes see them one round trip later, and a busy process pays about one round trip per round of
requests: a request's admission and take share one, its observation and record ride on the next.
The HTTP client calls only the sync `breaker.check()` (served from the last state seen); the
authoritative, atomic admission (`RedisCircuitBreaker.admit`) runs inside `RedisRateLimiter.acquire`
when the limiter is given the breaker, as `build_shared_guards` does.

If Redis is unreachable, both fall back to an in-process limiter / breaker (kept warm with the
same observations) for a few seconds at a time and log a warning: an outage of the coordination
store must not stop CRM traffic, it only loses the cross-process guarantee meanwhile.

Keys: `crm-mcp:{<provider>:<connection>}:rl:*` and `...:cb:*` (the braces are a Redis Cluster hash
tag: a script's keys share one slot). Every write refreshes a TTL, so nothing lingers.

Layout: this module holds the shared limiter and `build_shared_guards`; the breaker is in
`shared_breaker`, the client, key naming and write-behind queue in `shared_redis`, the Lua scripts
in `shared_state_lua`.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from crm_mcp.errors import RateLimitedError

from .base import ProviderSpec
from .breaker import BreakerState
from .ratelimit import LatencyMeter, RateLimiter, int_header, spec_limits
from .shared_breaker import RedisCircuitBreaker
from .shared_redis import Clock, RedisStore, SharedStateUnavailable, WriteBehind, as_str, key_prefix

Sleep = Callable[[float], Awaitable[Any]]
DAY_S = 86_400


class RedisRateLimiter(WriteBehind):
    """`RateLimiterLike` whose window, learned limits, penalty and daily budget live in Redis."""

    def __init__(
        self,
        store: RedisStore,
        provider: str,
        connection: str,
        *,
        limit: int = 100,
        interval_s: float = 10.0,
        daily_limit: int | None = None,
        daily_recheck_s: float = 600.0,
        max_wait_s: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
        local_clock: Clock = time.monotonic,
        breaker: RedisCircuitBreaker | None = None,
        remaining_header: str = "",
        limit_header: str = "",
        interval_ms_header: str = "",
        daily_remaining_header: str = "",
        daily_limit_header: str = "",
        reset_epoch_header: str = "",
    ) -> None:
        super().__init__(store, clock, local_clock if clock is None else clock)
        self.provider = provider
        self.connection = connection
        self.limit = limit
        self.interval_s = interval_s
        self.daily_limit = daily_limit
        self.daily_recheck_s = daily_recheck_s
        self.max_wait_s = max_wait_s
        self.breaker = breaker
        self._sleep = sleep
        self._headers = (
            remaining_header,
            limit_header,
            interval_ms_header,
            daily_remaining_header,
            daily_limit_header,
            reset_epoch_header,
        )
        prefix = key_prefix(provider, connection)
        self._keys = [prefix + "rl:log", prefix + "rl:state"]
        self._token = uuid.uuid4().hex[:12]
        self._seq = 0
        self._inflight: collections.deque[tuple[str, float]] = collections.deque()  # (member, sent at)
        self._latency = LatencyMeter()
        self._lock = asyncio.Lock()  # the acquirers that found no slot, in turn
        self._waiting = 0  # how many of them
        self._view: dict[str, Any] = {}
        self.fallback = RateLimiter(
            limit=limit, interval_s=interval_s, daily_limit=daily_limit,
            daily_recheck_s=daily_recheck_s, max_wait_s=max_wait_s, clock=self._local, sleep=sleep,
            remaining_header=remaining_header, limit_header=limit_header,
            interval_ms_header=interval_ms_header, daily_remaining_header=daily_remaining_header,
            daily_limit_header=daily_limit_header, reset_epoch_header=reset_epoch_header,
        )  # fmt: skip
        self.waits = 0
        self.waited_s = 0.0

    @classmethod
    def for_spec(cls, spec: ProviderSpec, store: RedisStore, connection: str, **kw: Any) -> RedisRateLimiter:
        """A limiter with the provider's documented defaults and header names (`kw` overrides)."""
        return cls(store, spec.name, connection, **{**spec_limits(spec), **kw})

    def _ttls(self) -> tuple[int, int]:
        """The log outlives a window (and slow answers); the state hash outlives a day's budget."""
        return int(self.interval_s * 2 + 60), DAY_S + 3600

    async def acquire(self) -> None:
        """Wait (cooperatively, bounded by `max_wait_s`) for a shared slot, then take it.

        One round trip when a slot is free: the breaker's admission and the take go in it, after
        every update this process made so far (a process always sends under its own latest
        knowledge). Acquirers of this process that find no slot wait their turn, first come first
        served, and later ones queue behind them rather than try first."""
        start = self._local()
        breaker = self.breaker
        together = breaker is not None and not breaker.degraded and breaker.state is BreakerState.CLOSED
        if breaker is not None and (self._waiting or not together):
            # its own round trip first: a refused call must not take a slot (the one taken with a
            # refusal in the same round trip, when the breaker opened meanwhile, is the exception)
            await breaker.admit()
            breaker = None
        if not self._waiting and await self._take(breaker) is None:
            return
        self._waiting += 1
        try:
            async with self._lock:
                while (wait := await self._take(None)) is not None:
                    if self._local() + wait - start > self.max_wait_s:
                        raise RateLimitedError(
                            f"rate limit: next request slot is {wait:.1f}s away", retry_after=round(wait, 3)
                        )
                    self.waits += 1
                    self.waited_s += wait
                    await self._sleep(wait)
        finally:
            self._waiting -= 1

    async def _take(self, breaker: RedisCircuitBreaker | None) -> float | None:
        """Take a slot if one is free now (None) or say how long until one is (seconds); with
        `breaker`, its admission goes in the same round trip, before the take."""
        if self.degraded:
            if breaker is not None:
                await breaker.admit()
            await self.fallback.acquire()
            return None
        verdict = breaker.submit_admit() if breaker is not None else None
        self._submit_pending()
        self._seq += 1
        member = f"{self._token}:{self._seq}"
        log_ttl, state_ttl = self._ttls()
        recheck = self.daily_recheck_s
        args = [self._now_arg(), member, self.limit, self.interval_s, log_ttl, state_ttl, recheck]
        taking = self._store.submit("take", self._keys, args)
        if breaker is not None:
            try:
                await breaker.admitted(verdict)
            except BaseException:
                taking.add_done_callback(_retrieved)
                raise
        try:
            taken, value = await taking
        except SharedStateUnavailable as exc:
            self._degrade(exc)
            return await self._take(None)
        if int(taken):
            self._inflight.append((member, self._local()))
            return None
        return float(as_str(value))

    def observe(self, headers: Mapping[str, str]) -> None:
        """The exchange is over: its send now occupies the window from its receipt; learn limits."""
        self.fallback.observe(headers)
        member = ""
        if self._inflight:
            member, sent = self._inflight.popleft()
            self._latency.add(self._local() - sent)
        rem_h, max_h, int_h, day_rem_h, day_lim_h, reset_h = self._headers
        values = [int_header(headers, h) for h in (max_h, int_h, rem_h, day_lim_h, day_rem_h, reset_h)]
        limit, interval_ms, remaining, daily_limit, daily_remaining, reset = values
        if limit and limit > 0:
            self.limit = limit
        if interval_ms and interval_ms > 0:
            self.interval_s = interval_ms / 1000.0
        if daily_limit:
            self.daily_limit = daily_limit
        reset_epoch = "" if not reset else f"{reset / 1000.0 if reset > 10**11 else float(reset):.3f}"

        def arg(v: int | None, positive: bool = False) -> str:
            return "" if v is None or (positive and v <= 0) else str(v)

        log_ttl, state_ttl = self._ttls()
        args = [
            self._now_arg(), member, arg(limit, True), arg(interval_ms, True), arg(remaining),
            arg(daily_limit, True), arg(daily_remaining), reset_epoch,
            self.limit, self.interval_s, log_ttl, state_ttl,
        ]  # fmt: skip
        self._schedule("observe", args)

    def useful_concurrency(self) -> int | None:
        """See `LatencyMeter.useful_concurrency`: the shared limit, this process's latency."""
        return self._latency.useful_concurrency(self.limit, self.interval_s)

    def note_429(self, retry_after: float | None) -> None:
        """Every process pauses until the provider's penalty is over (see `RateLimiter.note_429`)."""
        self.fallback.note_429(retry_after)
        ra = "" if retry_after is None else f"{retry_after:.6f}"
        self._schedule("note_429", [self._now_arg(), ra, self.interval_s, self._ttls()[1]])

    async def refresh(self) -> dict[str, Any]:
        """Read the shared view (what `snapshot()` reports) from Redis."""
        await self.flush()
        try:
            raw = await self._store.run("rl_view", self._keys, [self._now_arg(), self.limit, self.interval_s])
        except SharedStateUnavailable as exc:
            self._degrade(exc)
            return self.snapshot()
        limit, interval, in_window, server_left, daily_limit, daily_remaining, blocked = map(as_str, raw)
        self.limit, self.interval_s = int(limit), float(interval)
        self._view = {
            "in_window": int(in_window),
            "server_remaining": int(server_left) if server_left else None,
            "daily_limit": int(daily_limit) if daily_limit else self.daily_limit,
            "daily_remaining": int(daily_remaining) if daily_remaining else None,
            "blocked_for_s": round(float(blocked), 3),
        }
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """The last shared view read (`refresh()`), with this process's own wait counters."""
        if self.degraded:
            return {**self.fallback.snapshot(), "shared": False}
        view = self._view or {
            "in_window": None,
            "server_remaining": None,
            "daily_limit": self.daily_limit,
            "daily_remaining": None,
            "blocked_for_s": 0.0,
        }
        return {
            "limit": self.limit,
            "interval_s": self.interval_s,
            **view,
            "waits": self.waits,
            "waited_s": round(self.waited_s, 3),
            "shared": True,
        }

    async def aclose(self) -> None:
        """Apply what is queued, then close the Redis client (shared with the breaker)."""
        if self.breaker is not None:
            await self.breaker.flush()
        await self.flush()
        await self._store.aclose()


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a reply nobody will read as seen (no "exception was never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


def build_shared_guards(
    spec: ProviderSpec,
    connection: str,
    redis_url: str,
    *,
    sleep: Sleep = asyncio.sleep,
    breaker: bool = True,
) -> dict[str, Any]:
    """`limiter=` (and `breaker=`) options for a `ResilientClient` sharing state through Redis."""
    store = RedisStore(redis_url)
    shared_breaker = RedisCircuitBreaker(store, spec.name, connection) if breaker else None
    limiter = RedisRateLimiter.for_spec(spec, store, connection, sleep=sleep, breaker=shared_breaker)
    guards: dict[str, Any] = {"limiter": limiter}
    if shared_breaker is not None:
        guards["breaker"] = shared_breaker
    return guards

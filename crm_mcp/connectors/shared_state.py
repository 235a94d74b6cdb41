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

Sync methods of the protocols (`observe`, `note_429`, `record_*`) cannot await Redis: they queue
the update and a background task applies it in order; `acquire()` / `admit()` first flush this
process's queue, so a process always sends under its own latest knowledge, and other processes see
it one round trip later. The HTTP client calls only the sync `breaker.check()` (served from the last
state seen); the authoritative, atomic admission (`RedisCircuitBreaker.admit`) runs inside
`RedisRateLimiter.acquire` when the limiter is given the breaker, as `build_shared_guards` does.

If Redis is unreachable, both fall back to an in-process limiter / breaker (kept warm with the
same observations) for a few seconds at a time and log a warning: an outage of the coordination
store must not stop CRM traffic, it only loses the cross-process guarantee meanwhile.

Keys: `crm-mcp:{<provider>:<connection>}:rl:*` and `...:cb:*` (the braces are a Redis Cluster hash
tag: a script's keys share one slot). Every write refreshes a TTL, so nothing lingers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from crm_mcp.errors import CircuitOpenError, RateLimitedError

from .base import ProviderSpec
from .breaker import BreakerState, CircuitBreaker
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
FALLBACK_S = 5.0  # after a Redis error, use the local fallback this long before trying Redis again
DAY_S = 86_400

_LUA_COMMON = """
local function now_s(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function hash(key)
  local raw = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
  return h
end
local function num(v, default) if v == nil or v == '' then return default end return tonumber(v) end
"""

# KEYS: log (zset member -> send/receipt time), state (hash). ARGV: now, member, default limit,
# default interval, ttl of the log, ttl of the state. Returns {1, now} (slot taken) or {0, wait}.
_TAKE = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[2])
local limit = num(h.limit, tonumber(ARGV[3]))
local interval = num(h.interval_s, tonumber(ARGV[4]))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - interval))
local daily = num(h.daily_remaining, nil)
if daily ~= nil then
  local seen = num(h.daily_seen, now)
  local reset = num(h.daily_reset_epoch, (math.floor(seen / 86400) + 1) * 86400)
  if now >= reset then
    redis.call('HDEL', KEYS[2], 'daily_remaining', 'daily_reset_epoch')
    daily = nil
  end
end
local slot = math.max(now, num(h.blocked_until, 0))
local cap = math.max(1, limit)
local n = redis.call('ZCARD', KEYS[1])
if n >= cap then
  local oldest = redis.call('ZRANGE', KEYS[1], n - cap, n - cap, 'WITHSCORES')
  slot = math.max(slot, tonumber(oldest[2]) + interval)
end
local server_at = num(h.server_at, nil)
if server_at ~= nil and now < server_at + interval then
  local window_end = server_at + interval
  local sent = num(h.sent_since_obs, 0)
  local server_left = num(h.server_remaining, 0) - sent
  if server_left < num(h.own_left_at_obs, 0) - sent then
    local margin = math.min(math.max(1, math.ceil(limit * 0.05)), math.max(limit - 1, 0))
    local budget = server_left - margin
    if budget <= 0 then
      slot = math.max(slot, window_end)
    elseif server_left <= math.max(2, math.floor(limit / 4)) then
      slot = math.max(slot, num(h.last_send, 0) + (window_end - now) / (budget + 1))
    end
  end
end
if daily ~= nil and daily <= 0 then
  local reset = num(h.daily_reset_epoch, nil)
  if reset == nil or reset <= now then reset = (math.floor(now / 86400) + 1) * 86400 end
  slot = math.max(slot, reset)
end
if slot > now then return {0, fmt(slot - now)} end
redis.call('ZADD', KEYS[1], fmt(now), ARGV[2])
redis.call('HSET', KEYS[2], 'last_send', fmt(now))
redis.call('HINCRBY', KEYS[2], 'sent_since_obs', 1)
if daily ~= nil then redis.call('HINCRBY', KEYS[2], 'daily_remaining', -1) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {1, fmt(now)}
"""
)

# ARGV: now, answered member ('' = none), limit, interval_ms, remaining, daily limit,
# daily remaining, daily reset epoch ('' = not sent), default limit, default interval, ttls.
_OBSERVE = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], fmt(now), ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'limit', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 'interval_s', fmt(tonumber(ARGV[4]) / 1000)) end
local h = hash(KEYS[2])
local limit = num(h.limit, tonumber(ARGV[9]))
local interval = num(h.interval_s, tonumber(ARGV[10]))
if ARGV[5] ~= '' then
  local remaining = tonumber(ARGV[5])
  local server_at = num(h.server_at, nil)
  local fresh = server_at ~= nil and now < server_at + interval
  local left = num(h.server_remaining, 0) - num(h.sent_since_obs, 0)
  if (not fresh) or remaining < left then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - interval))
    local own_left = limit - redis.call('ZCARD', KEYS[1])
    redis.call('HSET', KEYS[2], 'server_at', fmt(now), 'server_remaining', remaining,
      'sent_since_obs', 0, 'own_left_at_obs', own_left)
  end
end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'daily_limit', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'daily_remaining', ARGV[7], 'daily_seen', fmt(now)) end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[2], 'daily_reset_epoch', ARGV[8]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[11]) end
redis.call('EXPIRE', KEYS[2], ARGV[12])
return 1
"""
)

# ARGV: now, retry_after ('' = none), default interval, ttl of the state.
_NOTE_429 = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[2])
local blocked = num(h.blocked_until, 0)
local retry_after = num(ARGV[2], nil)
if retry_after ~= nil then redis.call('HDEL', KEYS[2], 'server_at') end
if now < blocked then
  if retry_after ~= nil then blocked = math.max(blocked, now + retry_after) end
else
  blocked = math.max(blocked, now + (retry_after or num(h.interval_s, tonumber(ARGV[3]))))
end
redis.call('HSET', KEYS[2], 'blocked_until', fmt(blocked))
redis.call('EXPIRE', KEYS[2], ARGV[4])
return fmt(blocked - now)
"""
)

# KEYS: log, state. ARGV: now, default limit, default interval.
_RL_VIEW = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[2])
local interval = num(h.interval_s, tonumber(ARGV[3]))
local server_left = ''
if num(h.server_at, nil) ~= nil then server_left = tostring(num(h.server_remaining, 0)) end
return {tostring(num(h.limit, tonumber(ARGV[2]))), fmt(interval),
  redis.call('ZCOUNT', KEYS[1], '(' .. fmt(now - interval), '+inf'), server_left,
  h.daily_limit or '', h.daily_remaining or '', fmt(math.max(0, num(h.blocked_until, 0) - now))}
"""
)

# Breaker. KEYS: calls (zset), failures (zset), state (hash).
_CB_COMMON = (
    _LUA_COMMON
    + """
local now = now_s(ARGV[1])
local h = hash(KEYS[3])
local state = h.state or 'closed'
if state == 'open' and now >= num(h.open_until, 0) then
  state = 'half_open'
  redis.call('HSET', KEYS[3], 'state', state)
  redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
  h.probe_started = nil
end
local function view(verdict)
  local open_for = 0
  if state == 'open' then open_for = math.max(0, num(h.open_until, 0) - now) end
  return {verdict, state, fmt(open_for), fmt(num(h.open_until, 0)),
    redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]),
    num(h.trips, 0), num(h.consecutive_trips, 0)}
end
"""
)

# ARGV: now, probe timeout, owner token, ttl. verdict: 1 = allowed, 2 = allowed as the probe, 0 = no.
_CB_ADMIT = (
    _CB_COMMON
    + """
if state == 'closed' then return view(1) end
if state == 'open' then return view(0) end
local started = num(h.probe_started, nil)
if started == nil or now - started >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[3], 'probe_started', fmt(now), 'probe_owner', ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return view(2)
end
return view(0)
"""
)

# ARGV: now, failed (0/1), member, window, min calls, threshold, base open, max open, ttl.
_CB_RECORD = (
    _CB_COMMON
    + """
local failed = ARGV[2] == '1'
local function trip()
  local n = num(h.consecutive_trips, 0) + 1
  local open_for = math.min(tonumber(ARGV[8]), tonumber(ARGV[7]) * 2 ^ (n - 1))
  state = 'open'
  h.open_until = fmt(now + open_for)
  h.consecutive_trips = n
  h.trips = num(h.trips, 0) + 1
  redis.call('HSET', KEYS[3], 'state', state, 'open_until', h.open_until,
    'consecutive_trips', n, 'trips', h.trips)
  redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
  redis.call('DEL', KEYS[1], KEYS[2])
end
if state == 'half_open' then
  if failed then
    trip()
  else
    state = 'closed'
    h.consecutive_trips = 0
    redis.call('HSET', KEYS[3], 'state', state, 'consecutive_trips', 0)
    redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
    redis.call('DEL', KEYS[1], KEYS[2])
  end
elseif not (state == 'open' and failed) then
  redis.call('ZADD', KEYS[1], fmt(now), ARGV[3])
  if failed then redis.call('ZADD', KEYS[2], fmt(now), ARGV[3]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - tonumber(ARGV[4])))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now - tonumber(ARGV[4])))
  if failed and state == 'closed' then
    local calls = redis.call('ZCARD', KEYS[1])
    if calls >= tonumber(ARGV[5]) and redis.call('ZCARD', KEYS[2]) / calls >= tonumber(ARGV[6]) then
      trip()
    end
  end
end
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[9]) end
end
return view(1)
"""
)

# ARGV: now, owner token. Frees the probe slot if this owner holds it.
_CB_CANCEL = (
    _CB_COMMON
    + """
if state == 'half_open' and h.probe_owner == ARGV[2] then
  redis.call('HDEL', KEYS[3], 'probe_started', 'probe_owner')
end
return view(1)
"""
)

# ARGV: now, window. Read-only apart from the due open -> half_open transition.
_CB_VIEW = (
    _CB_COMMON
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - tonumber(ARGV[2])))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now - tonumber(ARGV[2])))
return view(1)
"""
)

_SCRIPTS = {
    "take": _TAKE,
    "observe": _OBSERVE,
    "note_429": _NOTE_429,
    "rl_view": _RL_VIEW,
    "cb_admit": _CB_ADMIT,
    "cb_record": _CB_RECORD,
    "cb_cancel": _CB_CANCEL,
    "cb_view": _CB_VIEW,
}


class SharedStateUnavailable(Exception):
    """Redis could not be reached (connection refused, timeout)."""


def _tag(value: str) -> str:
    return value.replace("{", "(").replace("}", ")").replace(" ", "_")


def key_prefix(provider: str, connection: str) -> str:
    """`crm-mcp:{provider:connection}:` — the braces keep one connection's keys in one cluster slot."""
    return f"crm-mcp:{{{_tag(provider)}:{_tag(connection)}}}:"


class RedisStore:
    """One lazily opened `redis.asyncio` client and the registered scripts, shared by the limiter and
    breaker of a connection. `redis` is imported on first use so start-up stays fast."""

    def __init__(self, url: str | None = None, *, client: Any = None, timeout_s: float = 2.0) -> None:
        if url is None and client is None:
            raise ValueError("RedisStore needs a url or a client")
        self.url = url
        self._client = client
        self._owns_client = client is None
        self._timeout_s = timeout_s
        self._scripts: dict[str, Any] = {}

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            assert self.url is not None
            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s
            )
        return self._client

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of `_SCRIPTS` atomically (EVALSHA, loading it on NOSCRIPT)."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.client().register_script(_SCRIPTS[script])
        try:
            return await registered(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise SharedStateUnavailable(f"redis unavailable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
            self._scripts.clear()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name) if name else None
    if raw is None:
        return None
    try:
        return int(float(raw))
    except ValueError:
        return None


class _WriteBehind:
    """Ordered background application of updates made from sync methods (see module docstring)."""

    def __init__(self, store: RedisStore, clock: Clock | None, local_clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._local = local_clock
        self._pending: collections.deque[Callable[[], Awaitable[Any]]] = collections.deque()
        self._drain_lock = asyncio.Lock()
        self._drainer: asyncio.Task[None] | None = None
        self._degraded_until = float("-inf")

    def _now_arg(self) -> str:
        return "" if self._clock is None else f"{self._clock():.6f}"

    @property
    def degraded(self) -> bool:
        return self._local() < self._degraded_until

    def _degrade(self, exc: BaseException) -> None:
        if not self.degraded:
            log.warning("shared rate-limit/breaker state unavailable (%s); using local state", exc)
        self._degraded_until = self._local() + FALLBACK_S

    def _schedule(self, op: Callable[[], Awaitable[Any]]) -> None:
        self._pending.append(op)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # applied by the next flush()
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self.flush())

    async def flush(self) -> None:
        """Apply this process's queued updates to Redis, in order."""
        async with self._drain_lock:
            while self._pending:
                op = self._pending.popleft()
                if self.degraded:
                    continue  # the local fallback already has it
                try:
                    await op()
                except SharedStateUnavailable as exc:
                    self._degrade(exc)
                except Exception:  # a bug must not break the request path; say so loudly
                    log.exception("shared state update failed")


class RedisRateLimiter(_WriteBehind):
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
        self._inflight: collections.deque[str] = collections.deque()
        self._lock = asyncio.Lock()
        self._view: dict[str, Any] = {}
        self.fallback = RateLimiter(
            limit=limit, interval_s=interval_s, daily_limit=daily_limit, max_wait_s=max_wait_s,
            clock=self._local, sleep=sleep, remaining_header=remaining_header,
            limit_header=limit_header, interval_ms_header=interval_ms_header,
            daily_remaining_header=daily_remaining_header, daily_limit_header=daily_limit_header,
            reset_epoch_header=reset_epoch_header,
        )  # fmt: skip
        self.waits = 0
        self.waited_s = 0.0

    @classmethod
    def for_spec(cls, spec: ProviderSpec, store: RedisStore, connection: str, **kw: Any) -> RedisRateLimiter:
        """A limiter with the provider's documented defaults and header names (`kw` overrides)."""
        options: dict[str, Any] = {
            "limit": spec.burst_limit,
            "interval_s": spec.burst_interval_s,
            "daily_limit": spec.daily_limit,
            "remaining_header": spec.remaining_header,
            "limit_header": spec.limit_header,
            "interval_ms_header": spec.interval_ms_header,
            "daily_remaining_header": spec.daily_remaining_header,
            "daily_limit_header": spec.daily_limit_header,
            "reset_epoch_header": spec.reset_epoch_header,
        }
        return cls(store, spec.name, connection, **{**options, **kw})

    def _ttls(self) -> tuple[int, int]:
        """The log outlives a window (and slow answers); the state hash outlives a day's budget."""
        return int(self.interval_s * 2 + 60), DAY_S + 3600

    async def acquire(self) -> None:
        """Wait (cooperatively, bounded by `max_wait_s`) for a shared slot, then take it."""
        if self.breaker is not None:
            await self.breaker.admit()
        start = self._local()
        async with self._lock:
            while True:
                await self.flush()
                if self.degraded:
                    await self.fallback.acquire()
                    return
                self._seq += 1
                member = f"{self._token}:{self._seq}"
                log_ttl, state_ttl = self._ttls()
                args = [self._now_arg(), member, self.limit, self.interval_s, log_ttl, state_ttl]
                try:
                    taken, value = await self._store.run("take", self._keys, args)
                except SharedStateUnavailable as exc:
                    self._degrade(exc)
                    continue
                if int(taken):
                    self._inflight.append(member)
                    return
                wait = float(_s(value))
                if self._local() + wait - start > self.max_wait_s:
                    raise RateLimitedError(
                        f"rate limit: next request slot is {wait:.1f}s away", retry_after=round(wait, 3)
                    )
                self.waits += 1
                self.waited_s += wait
                await self._sleep(wait)

    def observe(self, headers: Mapping[str, str]) -> None:
        """The exchange is over: its send now occupies the window from its receipt; learn limits."""
        self.fallback.observe(headers)
        member = self._inflight.popleft() if self._inflight else ""
        rem_h, max_h, int_h, day_rem_h, day_lim_h, reset_h = self._headers
        values = [_header_int(headers, h) for h in (max_h, int_h, rem_h, day_lim_h, day_rem_h, reset_h)]
        limit, interval_ms, remaining, daily_limit, daily_remaining, reset = values
        if limit and limit > 0:
            self.limit = limit
        if interval_ms and interval_ms > 0:
            self.interval_s = interval_ms / 1000.0
        if daily_limit:
            self.daily_limit = daily_limit
        reset_epoch = "" if not reset else f"{reset / 1000.0 if reset > 10**11 else float(reset):.3f}"
        now = self._now_arg()

        def arg(v: int | None, positive: bool = False) -> str:
            return "" if v is None or (positive and v <= 0) else str(v)

        async def op() -> None:
            log_ttl, state_ttl = self._ttls()
            args = [
                now, member, arg(limit, True), arg(interval_ms, True), arg(remaining),
                arg(daily_limit, True), arg(daily_remaining), reset_epoch,
                self.limit, self.interval_s, log_ttl, state_ttl,
            ]  # fmt: skip
            await self._store.run("observe", self._keys, args)

        self._schedule(op)

    def note_429(self, retry_after: float | None) -> None:
        """Every process pauses until the provider's penalty is over (see `RateLimiter.note_429`)."""
        self.fallback.note_429(retry_after)
        now = self._now_arg()
        ra = "" if retry_after is None else f"{retry_after:.6f}"

        async def op() -> None:
            await self._store.run("note_429", self._keys, [now, ra, self.interval_s, self._ttls()[1]])

        self._schedule(op)

    async def refresh(self) -> dict[str, Any]:
        """Read the shared view (what `snapshot()` reports) from Redis."""
        await self.flush()
        try:
            raw = await self._store.run("rl_view", self._keys, [self._now_arg(), self.limit, self.interval_s])
        except SharedStateUnavailable as exc:
            self._degrade(exc)
            return self.snapshot()
        limit, interval, in_window, server_left, daily_limit, daily_remaining, blocked = map(_s, raw)
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


class RedisCircuitBreaker(_WriteBehind):
    """`CircuitBreaker`'s public methods, with the window of outcomes and the state in Redis.

    `check()` is sync (the HTTP client calls it) and answers from the last state seen; `admit()` is
    the atomic decision and claims the single half-open probe across all processes.
    """

    def __init__(
        self,
        store: RedisStore,
        provider: str,
        connection: str,
        *,
        name: str = "",
        window_s: float = 60.0,
        min_calls: int = 5,
        failure_rate_threshold: float = 0.5,
        base_open_s: float = 5.0,
        max_open_s: float = 300.0,
        probe_timeout_s: float = 60.0,
        clock: Clock | None = None,
        local_clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(store, clock, local_clock if clock is None else clock)
        self.name = name or f"{provider}:{connection}"
        self.window_s = window_s
        self.min_calls = min_calls
        self.failure_rate_threshold = failure_rate_threshold
        self.base_open_s = base_open_s
        self.max_open_s = max_open_s
        self.probe_timeout_s = probe_timeout_s
        prefix = key_prefix(provider, connection)
        self._keys = [prefix + "cb:calls", prefix + "cb:failures", prefix + "cb:state"]
        self._token = uuid.uuid4().hex[:12]
        self._seq = 0
        self._seen_state = BreakerState.CLOSED
        self._seen_open_until = 0.0  # on the shared clock
        self._open_deadline = 0.0  # the same moment on the local clock
        self._seen: dict[str, Any] = {"calls_in_window": 0, "failures": 0, "trips": 0, "consecutive_trips": 0}
        self._seen_at = float("-inf")
        self._pulling = False
        self.fallback = CircuitBreaker(
            self.name, window_s=window_s, min_calls=min_calls,
            failure_rate_threshold=failure_rate_threshold, base_open_s=base_open_s,
            max_open_s=max_open_s, probe_timeout_s=probe_timeout_s, clock=self._local,
        )  # fmt: skip

    def _ttl(self) -> int:
        return int(max(self.window_s, self.max_open_s, self.probe_timeout_s) * 2 + 60)

    def _apply(self, raw: list[Any]) -> int:
        verdict, state, open_for, open_until, calls, failures, trips, consecutive = raw
        self._seen_state = BreakerState(_s(state))
        self._seen_open_until = float(_s(open_until))
        self._open_deadline = self._local() + float(_s(open_for))
        self._seen = {
            "calls_in_window": int(calls),
            "failures": int(failures),
            "trips": int(trips),
            "consecutive_trips": int(consecutive),
        }
        self._seen_at = self._local()
        return int(verdict)

    # -- the last state seen (sync) -------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        if self.degraded:
            return self.fallback.state
        if self._seen_state is BreakerState.OPEN and self._local() >= self._open_deadline:
            return BreakerState.HALF_OPEN
        return self._seen_state

    @property
    def open_until(self) -> float | None:
        return self._seen_open_until if self.state is BreakerState.OPEN else None

    @property
    def trips(self) -> int:
        return int(self._seen["trips"])

    def failure_rate(self) -> float:
        calls = self._seen["calls_in_window"]
        return self._seen["failures"] / calls if calls else 0.0

    def open_time_for(self, consecutive_trips: int) -> float:
        return min(self.max_open_s, self.base_open_s * 2 ** max(0, consecutive_trips - 1))

    def allow(self) -> bool:
        """Sync pre-check: False only while the last state seen is OPEN (`admit()` decides)."""
        if self.degraded:
            return self.fallback.allow()
        if self._local() - self._seen_at > 1.0 and not self._pulling:
            self._pulling = True  # refresh the state seen in the background, at most once a second
            self._schedule(self._pull)
        return self.state is not BreakerState.OPEN

    def check(self, provider: str = "") -> None:
        if not self.allow():
            self._refuse(provider, self._seen_open_until, self._open_deadline - self._local())

    def _refuse(self, provider: str, until: float | None, wait: float) -> None:
        wait = max(0.0, wait)
        raise CircuitOpenError(
            f"circuit open for {self.name or provider}: provider failing, retry in {wait:.1f}s",
            until=until,
            retry_after=wait,
            provider=provider,
        )

    # -- the shared decision (async) ------------------------------------------------------------
    async def admit(self, provider: str = "") -> None:
        """Atomically: allowed while CLOSED; in HALF_OPEN one probe for all processes; else raise."""
        await self.flush()
        if self.degraded:
            return  # `check()` consulted the local fallback
        args = [self._now_arg(), self.probe_timeout_s, self._token, self._ttl()]
        try:
            verdict = self._apply(await self._store.run("cb_admit", self._keys, args))
        except SharedStateUnavailable as exc:
            self._degrade(exc)
            self.fallback.check(provider)
            return
        if verdict == 0:
            if self._seen_state is BreakerState.OPEN:
                self._refuse(provider, self._seen_open_until, self._open_deadline - self._local())
            self._refuse(provider, None, 1.0)  # half-open: another call holds the single probe

    async def _pull(self) -> None:
        self._pulling = False
        self._apply(await self._store.run("cb_view", self._keys, [self._now_arg(), self.window_s]))

    async def refresh(self) -> dict[str, Any]:
        """Read the shared state (what `state`, `check()` and `snapshot()` answer from)."""
        await self.flush()
        try:
            await self._pull()
        except SharedStateUnavailable as exc:
            self._degrade(exc)
        return self.snapshot()

    def _record(self, failed: bool) -> None:
        self._seq += 1
        member = f"{self._token}:{self._seq}"
        now = self._now_arg()

        async def op() -> None:
            args = [
                now, "1" if failed else "0", member, self.window_s, self.min_calls,
                self.failure_rate_threshold, self.base_open_s, self.max_open_s, self._ttl(),
            ]  # fmt: skip
            self._apply(await self._store.run("cb_record", self._keys, args))

        self._schedule(op)

    def record_success(self) -> None:
        self.fallback.record_success()
        self._record(False)

    def record_failure(self) -> None:
        self.fallback.record_failure()
        self._record(True)

    def record_cancelled(self) -> None:
        """Free the probe slot if this process holds it."""
        self.fallback.record_cancelled()
        now = self._now_arg()

        async def op() -> None:
            self._apply(await self._store.run("cb_cancel", self._keys, [now, self._token]))

        self._schedule(op)

    def snapshot(self) -> dict[str, Any]:
        if self.degraded:
            return {**self.fallback.snapshot(), "shared": False}
        state = self.state
        is_open = state is BreakerState.OPEN
        return {
            "state": state.value,
            "failure_rate": round(self.failure_rate(), 3),
            "calls_in_window": self._seen["calls_in_window"],
            "open_until": self._seen_open_until if is_open else None,
            "open_for_s": round(max(0.0, self._open_deadline - self._local()), 3) if is_open else 0.0,
            "trips": self._seen["trips"],
            "consecutive_trips": self._seen["consecutive_trips"],
            "shared": True,
        }

    async def aclose(self) -> None:
        await self.flush()


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

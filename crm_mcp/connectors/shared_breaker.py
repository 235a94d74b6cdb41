"""A circuit breaker whose window of outcomes and state live in Redis, shared by every process.

All servers and workers of one connection stop calling a failing provider together, and exactly
one of them sends the half-open probe: `admit()` decides that atomically on the Redis server.
If Redis is unreachable, the in-process `CircuitBreaker` kept warm beside it answers for a while.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from crm_mcp.errors import CircuitOpenError

from .breaker import BreakerState, CircuitBreaker, open_time
from .shared_redis import Clock, RedisStore, SharedStateUnavailable, WriteBehind, as_str, key_prefix


class RedisCircuitBreaker(WriteBehind):
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
        self._pulled_at = float("-inf")
        self.fallback = CircuitBreaker(
            self.name, window_s=window_s, min_calls=min_calls,
            failure_rate_threshold=failure_rate_threshold, base_open_s=base_open_s,
            max_open_s=max_open_s, probe_timeout_s=probe_timeout_s, clock=self._local,
        )  # fmt: skip

    def _ttl(self) -> int:
        return int(max(self.window_s, self.max_open_s, self.probe_timeout_s) * 2 + 60)

    def _apply(self, raw: list[Any]) -> int:
        verdict, state, open_for, open_until, calls, failures, trips, consecutive = raw
        self._seen_state = BreakerState(as_str(state))
        self._seen_open_until = float(as_str(open_until))
        self._open_deadline = self._local() + float(as_str(open_for))
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
        return open_time(self.base_open_s, self.max_open_s, consecutive_trips)

    def allow(self) -> bool:
        """Sync pre-check: False only while the last state seen is OPEN (`admit()` decides)."""
        if self.degraded:
            return self.fallback.allow()
        now = self._local()
        if now - self._seen_at > 1.0 and now - self._pulled_at > 1.0:
            self._pulled_at = now  # refresh the state seen in the background, at most once a second
            self._schedule("cb_view", [self._now_arg(), self.window_s], self._apply)
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
        await self.admitted(self.submit_admit(), provider)

    def submit_admit(self) -> asyncio.Future[Any] | None:
        """Queue the admission for the next round trip (after every update made so far); None
        when degraded (then `admitted` asks the local fallback)."""
        if self.degraded:
            return None
        self._submit_pending()
        args = [self._now_arg(), self.probe_timeout_s, self._token, self._ttl()]
        return self._store.submit("cb_admit", self._keys, args)

    async def admitted(self, verdict: asyncio.Future[Any] | None, provider: str = "") -> None:
        """The admission `submit_admit` queued: returns if allowed, raises CircuitOpenError if not."""
        if verdict is None:
            return  # `check()` consulted the local fallback
        try:
            allowed = self._apply(await verdict)
        except SharedStateUnavailable as exc:
            self._degrade(exc)
            self.fallback.check(provider)
            return
        if allowed == 0:
            if self._seen_state is BreakerState.OPEN:
                self._refuse(provider, self._seen_open_until, self._open_deadline - self._local())
            self._refuse(provider, None, 1.0)  # half-open: another call holds the single probe

    async def refresh(self) -> dict[str, Any]:
        """Read the shared state (what `state`, `check()` and `snapshot()` answer from)."""
        await self.flush()
        try:
            self._apply(await self._store.run("cb_view", self._keys, [self._now_arg(), self.window_s]))
        except SharedStateUnavailable as exc:
            self._degrade(exc)
        return self.snapshot()

    def _record(self, failed: bool) -> None:
        self._seq += 1
        args = [
            self._now_arg(), "1" if failed else "0", f"{self._token}:{self._seq}", self.window_s,
            self.min_calls, self.failure_rate_threshold, self.base_open_s, self.max_open_s, self._ttl(),
        ]  # fmt: skip
        self._schedule("cb_record", args, self._apply)

    def record_success(self) -> None:
        self.fallback.record_success()
        self._record(False)

    def record_failure(self) -> None:
        self.fallback.record_failure()
        self._record(True)

    def record_cancelled(self) -> None:
        """Free the probe slot if this process holds it."""
        self.fallback.record_cancelled()
        self._schedule("cb_cancel", [self._now_arg(), self._token], self._apply)

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

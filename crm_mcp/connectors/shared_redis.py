"""The Redis plumbing shared by the Redis-backed limiter and breaker: one lazily opened client with
the registered scripts, the key naming, and the write-behind queue that lets their sync methods
update Redis without awaiting it (see `crm_mcp.connectors.shared_state`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .shared_state_lua import SCRIPTS

log = logging.getLogger(__name__)

Clock = Callable[[], float]
FALLBACK_S = 5.0  # after a Redis error, use the local fallback this long before trying Redis again


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
        """Run one of `SCRIPTS` atomically (EVALSHA, loading it on NOSCRIPT)."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.client().register_script(SCRIPTS[script])
        try:
            return await registered(keys=keys, args=args)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise SharedStateUnavailable(f"redis unavailable: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
            self._scripts.clear()


def as_str(value: Any) -> str:
    """A Redis reply item (bytes or number) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class WriteBehind:
    """Ordered background application of updates made from sync methods (why: see the docstring
    of `crm_mcp.connectors.shared_state`)."""

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

"""The Redis plumbing shared by the Redis-backed limiter and breaker: one lazily opened client with
the registered scripts, the key naming, and the write-behind queue that lets their sync methods
update Redis without awaiting it (see `crm_mcp.connectors.shared_state`).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from .shared_state_lua import SCRIPTS

_SHAS = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPTS.items()}  # noqa: S324 (Redis names scripts by SHA-1)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Applier = Callable[[Any], Any]  # takes a script's reply
FALLBACK_S = 5.0  # after a Redis error, use the local fallback this long before trying Redis again


class SharedStateUnavailable(Exception):
    """Redis could not be reached (connection refused, timeout)."""


def _tag(value: str) -> str:
    return value.replace("{", "(").replace("}", ")").replace(" ", "_")


def key_prefix(provider: str, connection: str) -> str:
    """`crm-mcp:{provider:connection}:` — the braces keep one connection's keys in one cluster slot."""
    return f"crm-mcp:{{{_tag(provider)}:{_tag(connection)}}}:"


class RedisStore:
    """One lazily opened `redis.asyncio` client, shared by the limiter and breaker of a connection.
    `redis` is imported on first use so start-up stays fast.

    Script calls are pipelined: a call made while a round trip is under way waits for it and goes
    with every other call made meanwhile in the next one (in the order they were made; Redis runs a
    pipeline's commands one after the other). Each CRM request needs a few script calls (the
    breaker's admission and record, the limiter's take and observation); batched, a busy process
    pays about one round trip per round of requests instead of a few per request, serialized."""

    def __init__(self, url: str | None = None, *, client: Any = None, timeout_s: float = 2.0) -> None:
        if url is None and client is None:
            raise ValueError("RedisStore needs a url or a client")
        self.url = url
        self._client = client
        self._owns_client = client is None
        self._timeout_s = timeout_s
        self._queue: list[tuple[str, list[str], list[Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    def client(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            assert self.url is not None
            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s
            )
        return self._client

    def submit(self, script: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one of `SCRIPTS` (run atomically) for the next round trip; the future has its
        reply, or SharedStateUnavailable when Redis could not be reached. Needs a running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send())
        return future

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of `SCRIPTS` atomically and return its reply (see `submit`)."""
        return await self.submit(script, keys, args)

    async def _send(self) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        while self._queue:
            batch, self._queue = self._queue, []
            try:
                replies = await self._execute([(script, keys, args) for script, keys, args, _ in batch])
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                replies = [SharedStateUnavailable(f"redis unavailable: {type(exc).__name__}")] * len(batch)
            except Exception as exc:  # anything else is each caller's error, as it would be alone
                replies = [exc] * len(batch)
            except BaseException:  # cancelled (the loop is closing): so are the calls in hand
                for *_, future in batch:
                    future.cancel()
                raise
            for (*_, future), reply in zip(batch, replies, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _execute(self, calls: list[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """One pipeline of EVALSHAs (no transaction: each script is atomic by itself). Scripts the
        server does not have (first use, or after a restart) are loaded and those calls re-sent."""
        from redis.exceptions import NoScriptError

        client = self.client()
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipe = client.pipeline(transaction=False)
            for i in todo:
                script, keys, args = calls[i]
                pipe.evalsha(_SHAS[script], len(keys), *keys, *args)
            for i, reply in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
            todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
            if not todo or attempt:
                break
            for script in {calls[i][0] for i in todo}:
                await client.script_load(SCRIPTS[script])
        return replies

    async def aclose(self) -> None:
        if self._sender is not None and not self._sender.done():
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None


def as_str(value: Any) -> str:
    """A Redis reply item (bytes or number) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class WriteBehind:
    """Updates made from sync methods, handed to the store at once and applied in the order made
    (why: see the docstring of `crm_mcp.connectors.shared_state`). Subclasses set `_keys`."""

    _keys: list[str]

    def __init__(self, store: RedisStore, clock: Clock | None, local_clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._local = local_clock
        # made with no event loop running (sync callers): handed over by the next flush()
        self._pending: collections.deque[tuple[str, list[Any], Applier | None]] = collections.deque()
        self._submitted: set[asyncio.Future[Any]] = set()
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

    def _schedule(self, script: str, args: list[Any], apply: Applier | None = None) -> None:
        """Run `script` on this instance's keys with `args` in the next round trip; `apply` gets
        its reply. Skipped while degraded: the local fallback already has the update."""
        if self.degraded:
            return
        self._pending.append((script, args, apply))
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._submit_pending()

    def _submit_pending(self) -> None:
        while self._pending:
            script, args, apply = self._pending.popleft()
            future = self._store.submit(script, self._keys, args)
            self._submitted.add(future)
            future.add_done_callback(functools.partial(self._applied, apply))

    def _applied(self, apply: Applier | None, future: asyncio.Future[Any]) -> None:
        self._submitted.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, SharedStateUnavailable):
            self._degrade(exc)
        elif exc is not None:  # a bug must not break the request path; say so loudly
            log.error("shared state update failed", exc_info=exc)
        elif apply is not None:
            apply(future.result())

    async def flush(self) -> None:
        """Return once every update made so far is applied in Redis (or failed)."""
        self._submit_pending()
        if self._submitted:  # (asyncio.wait: a cancelled caller does not cancel the updates)
            await asyncio.wait(list(self._submitted))

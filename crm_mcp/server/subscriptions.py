"""Resource subscriptions: tell subscribed clients when a sync:// resource really changed.

Both protocol eras are served. Handshake-era clients (2025-*) send `resources/subscribe` and get
`notifications/resources/updated` on their session (stdio, SSE, streamable HTTP alike);
2026-07-28 clients open a `subscriptions/listen` stream and get the same event through the SDK's
subscription bus. Either way the URIs they watch land in one `ResourceWatcher`.

The watcher wakes on `Runtime.touch()` (a tool wrote, the worker delivered) and, so that a worker
in another process is noticed too, every `poll_s`. It waits `window_s` first, so that every change
inside the window becomes one check, then reads each watched resource's fingerprint and notifies
only where it differs from the last one sent: at most one notification per window per resource,
and none for a write that did not change what the resource shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.types import (
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from crm_mcp.scope import LOCAL, acting_as, current_principal

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.session import ServerSession

    from crm_mcp.runtime import Runtime

log = logging.getLogger(__name__)

Fingerprint = Callable[[str], Awaitable[str | None]]
"""uri -> a digest of what the resource shows now, or None for a URI that is not watched."""

WATCHED_PREFIXES = ("sync://status", "sync://dead-letter", "sync://operations/")
# what sync://status shows that moves with the clock, not with the outbox
_STATUS_VOLATILE = {
    "generated_at",
    "oldest_pending_age_s",
    "due_now",
    "workers",
    "live_workers",
    "connectors",
}


class ResourceWatcher:
    """The URIs clients watch, and the loop that notifies them (started on the first one)."""

    def __init__(
        self,
        rt: Runtime,
        fingerprint: Fingerprint,
        bus: SubscriptionBus,
        *,
        window_s: float = 1.0,
        poll_s: float = 5.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._rt = rt
        self._fingerprint = fingerprint
        self._bus = bus
        self.window_s, self.poll_s, self.sleep = window_s, poll_s, sleep
        # uri -> connection -> a session of it (the SDK makes one per request; any of them sends
        # on the connection's own channel, so the latest one stands for the connection)
        self._sessions: dict[str, dict[object, ServerSession]] = {}
        self._listening: Counter[str] = Counter()
        self._sent: dict[str, str | None] = {}  # uri -> fingerprint clients last saw
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None
        self.checked = asyncio.Event()  # set after each check (tests wait on it)

    # -- who watches what --------------------------------------------------------------------
    def uris(self) -> set[str]:
        return {uri for uri, sessions in self._sessions.items() if sessions} | set(+self._listening)

    async def subscribe(self, uri: str, session: ServerSession) -> None:
        """A handshake-era `resources/subscribe` (any URI is accepted; unknown ones never fire)."""
        await self._baseline([uri])
        self._sessions.setdefault(uri, {})[_connection_of(session)] = session
        self._start()

    def unsubscribe(self, uri: str, session: ServerSession) -> None:
        self._sessions.get(uri, {}).pop(_connection_of(session), None)
        self._changed.set()  # lets the loop end if nobody is left

    async def listen(self, uris: Collection[str]) -> None:
        """A `subscriptions/listen` stream starts watching `uris`."""
        await self._baseline(uris)
        self._listening.update(uris)
        self._start()

    def unlisten(self, uris: Collection[str]) -> None:
        self._listening.subtract(uris)
        self._changed.set()

    async def _baseline(self, uris: Collection[str]) -> None:
        for uri in uris:
            if uri not in self.uris():
                self._sent[uri] = await self._fingerprint(uri)

    # -- the loop ----------------------------------------------------------------------------
    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._remove_listener = self._rt.on_change(self._changed.set)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="crm-mcp resource watcher")

    async def _run(self) -> None:
        with acting_as(LOCAL):  # the loop serves every tenant: it sees all (notifications carry no data)
            await self._loop()

    async def _loop(self) -> None:
        try:
            while self.uris():
                with contextlib.suppress(TimeoutError):  # the poll: a worker in another process
                    await asyncio.wait_for(self._changed.wait(), timeout=self.poll_s)
                if not self.uris():
                    break
                await self.sleep(self.window_s)  # every change inside the window: one check
                self._changed.clear()
                await self.check()
        finally:
            if self._remove_listener is not None:
                self._remove_listener()
                self._remove_listener = None

    async def check(self) -> list[str]:
        """Notify the watchers of every watched resource whose fingerprint changed; returns those."""
        changed = []
        for uri in sorted(self.uris()):
            try:
                now = await self._fingerprint(uri)
            except Exception:  # a failing read must not end every subscription
                log.warning("could not read %s to check it for changes", uri, exc_info=True)
                continue
            if now is not None and now != self._sent.get(uri):
                self._sent[uri] = now
                changed.append(uri)
                await self._notify(uri)
        self.checked.set()
        return changed

    async def _notify(self, uri: str) -> None:
        if self._listening[uri] > 0:
            await self._bus.publish(ResourceUpdated(uri=uri))
        for key, session in list(self._sessions.get(uri, {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # the client went away without unsubscribing
                log.debug("dropping the subscription of a closed connection to %s", uri, exc_info=True)
                self._sessions[uri].pop(key, None)

    async def aclose(self) -> None:
        self._sessions.clear()
        self._listening.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _connection_of(session: ServerSession) -> object:
    """What identifies a client across its requests: the SDK's per-connection object, which
    `ServerSession` (one per request) holds but does not expose."""
    return getattr(session, "_connection", session)


def resource_fingerprint(rt: Runtime, server: MCPServer[Any]) -> Fingerprint:
    """Fingerprints of the sync:// resources as clients read them (other URIs: None, not watched)."""

    async def fingerprint(uri: str) -> str | None:
        if not uri.startswith(WATCHED_PREFIXES):
            return None
        if uri == "sync://status":
            from crm_mcp.views import current_status

            status = await current_status(rt, max_age_s=0.5)
            text = status.model_dump_json(exclude=_STATUS_VOLATILE)
        else:
            from mcp.server.mcpserver.exceptions import ResourceError

            try:
                text = "".join(str(part.content) for part in await server.read_resource(uri))  # type: ignore[union-attr]
            except ResourceError:
                text = ""  # not there (yet): its appearance is a change
        return hashlib.sha256(text.encode()).hexdigest()

    return fingerprint


async def _visible(rt: Runtime, uri: str) -> bool:
    """Whether the caller may watch `uri`: an operation only if it is on one of its connections
    (an unknown id is refused like another tenant's: there is nothing of the caller's to watch)."""
    if not uri.startswith("sync://operations/") or current_principal().unrestricted:
        return True
    from crm_mcp.views import operation_view  # lazy: SQLAlchemy stays off start-up

    return await operation_view(rt, uri.removeprefix("sync://operations/")) is not None


def install(server: MCPServer[Any], rt: Runtime, bus: SubscriptionBus) -> ResourceWatcher:
    """Serve `resources/subscribe`, `resources/unsubscribe` and `subscriptions/listen` through
    one watcher. Registering the first declares the `resources.subscribe` capability."""
    watcher = ResourceWatcher(rt, resource_fingerprint(rt, server), bus)
    listen = ListenHandler(bus)

    async def on_subscribe(
        ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        if await _visible(rt, str(params.uri)):  # another tenant's operation never fires
            await watcher.subscribe(str(params.uri), ctx.session)
        return EmptyResult()

    async def on_unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        watcher.unsubscribe(str(params.uri), ctx.session)
        return EmptyResult()

    async def on_listen(
        ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        uris = [u for u in params.notifications.resource_subscriptions or () if await _visible(rt, u)]
        await watcher.listen(uris)
        try:
            return await listen(ctx, params)
        finally:
            watcher.unlisten(uris)

    lowlevel = server._lowlevel_server  # the SDK's own decorators register this way (no public seam)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, on_unsubscribe)
    lowlevel.add_request_handler("subscriptions/listen", SubscriptionsListenRequestParams, on_listen)
    return watcher

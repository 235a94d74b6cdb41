"""The runtime shared by tools, resources, the worker and the CLI: settings, database, connectors.

Everything heavy (SQLAlchemy, alembic, connectors) is created lazily on first use, so that
`crm-mcp serve` answers the MCP handshake before any of it is imported. `Runtime.warm_up()` runs
those imports in a thread right after start-up so the first tool call does not pay for them.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from crm_mcp.errors import ConfigurationError
from crm_mcp.scope import current_principal
from crm_mcp.settings import ConnectionSettings, Settings, redact_url

if TYPE_CHECKING:
    from crm_mcp.connectors.base import Connector
    from crm_mcp.observability.metrics import Metrics
    from crm_mcp.state.db import Database

C = TypeVar("C", bound="Connector")

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _import_heavy() -> None:
    import crm_mcp.connectors.registry
    import crm_mcp.observability.metrics
    import crm_mcp.state.db
    import crm_mcp.state.outbox
    import crm_mcp.state.status
    import crm_mcp.sync.actions  # noqa: F401


def _freeze_startup_heap() -> None:
    """Move everything start-up created (modules, mappers, schemas: about 130,000 objects) out of
    the garbage collector's reach, once per process. It lives as long as the process anyway, and
    a full collection no longer walks it: in a delivering worker that pause was 70-220 ms on this
    machine, every event loop task (tool calls, deliveries, lease renewals) stalled behind it.
    `gc.freeze()` is a constant-time list move. A frozen object is never reclaimed, but start-up
    builds what the process keeps; it leaves next to no garbage behind."""
    if not gc.get_freeze_count():  # the interpreter knows whether this process froze already
        gc.freeze()


class Runtime:
    """Lazily built services for one process. Close it with `aclose()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        connector_overrides: dict[str, Any] | None = None,
    ) -> None:
        """`connector_overrides` are passed to every connector's client (tests inject clock/sleep)."""
        self.settings = settings
        self.clock = clock
        self._connector_overrides = dict(connector_overrides or {})
        self._db: Database | None = None
        self._db_lock = asyncio.Lock()
        self._connectors: dict[str, Connector] = {}
        self._connections: list[ConnectionSettings] | None = None
        # Local writes bump `generation`; cached read models (sync status) are valid for one
        # generation and a short age, so a status poll costs no SQL while nothing changed here.
        self.generation = 0
        self.read_cache: dict[str, tuple[float, int, Any]] = {}
        # one recomputation at a time: concurrent readers of a stale snapshot wait for it
        self.read_lock = asyncio.Lock()
        self._change_listeners: dict[object, Callable[[], None]] = {}

    @functools.cached_property
    def metrics(self) -> Metrics:
        """This runtime's Prometheus metrics, in a registry of its own (docs/observability.md)."""
        from crm_mcp.observability.metrics import Metrics  # lazy: prometheus_client off start-up

        return Metrics()

    def touch(self) -> None:
        """Record that local state changed (a tool wrote, the worker delivered)."""
        self.generation += 1
        for listener in list(self._change_listeners.values()):
            listener()

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (synchronous, must not raise) on every `touch()`; returns the remover.

        This is how subscribed MCP clients learn that a sync:// resource may have changed.
        """
        token = object()
        self._change_listeners[token] = listener

        def remove() -> None:
            self._change_listeners.pop(token, None)

        return remove

    # -- connections -------------------------------------------------------------------------
    def connections(self) -> list[ConnectionSettings]:
        """The connections the current principal may use (every one outside an MCP request, and
        for the local user; see `crm_mcp.scope`): the one place tenants are kept apart."""
        if self._connections is None:
            self._connections = self.settings.connections()
        principal = current_principal()
        if principal.unrestricted:
            return self._connections
        return [c for c in self._connections if principal.may_use(c.name)]

    def connection(self, name: str | None = None, needs: str | None = None) -> ConnectionSettings:
        """The named connection, or the only one whose CRM has capability `needs` when `name` is None.

        Raises:
            ConfigurationError: no such connection, none or several with that capability (the
                message lists them), or the named one's CRM lacks it (CapabilityError).
        """
        from crm_mcp.connectors.registry import get_provider

        conns = self.connections()
        if name:
            for c in conns:
                if c.name == name:
                    if needs and needs not in get_provider(c.provider).capabilities:
                        raise self._lacks(c, needs)
                    return c
            known = ", ".join(c.name for c in conns) or "none"
            raise ConfigurationError(
                f"No connection named {name!r}. Configured connections: {known}.",
                hint="Call again with one of those names as `connection`, or without it.",
            )
        candidates = [
            c
            for c in conns
            if (p := get_provider(c.provider)).connector is not None
            and (needs is None or needs in p.capabilities)
        ]
        if len(candidates) == 1:
            return candidates[0]
        default = self.settings.default_connection
        if default and (chosen := [c for c in candidates if c.name == default]):
            return chosen[0]
        what = f"CRM connection with {needs.replace('_', ' ')}" if needs else "CRM connection"
        if not candidates and not current_principal().unrestricted:
            raise ConfigurationError(
                f"No {what} is available to this access token"
                + (f" (yours: {', '.join(c.name for c in conns)})" if conns else "")
                + ".",
                hint="Ask the operator to map connections to your principal ([principals.<name>] "
                "in crm-mcp.toml).",
            )
        if not candidates:
            others = [c.name for c in conns]
            raise ConfigurationError(
                f"No {what} is configured"
                + (f" (configured: {', '.join(others)})" if others else "")
                + ". Set a provider's CRM_MCP_<PROVIDER>_* variables (see `crm-mcp --help`), add a "
                "[connections.<name>] table to crm-mcp.toml, or start with `crm-mcp serve --sandbox`."
            )
        names = ", ".join(f"{c.name} ({c.provider})" for c in candidates)
        raise ConfigurationError(
            f"Several connections could do this: {names}.",
            hint="Call again with `connection` set to one of them (an operator can set "
            "CRM_MCP_DEFAULT_CONNECTION to the one to use when none is named).",
        )

    def _lacks(self, conn: ConnectionSettings, needs: str) -> ConfigurationError:
        from crm_mcp.connectors.base import WITHOUT
        from crm_mcp.connectors.registry import get_provider
        from crm_mcp.errors import CapabilityError

        able = [c.name for c in self.connections() if needs in get_provider(c.provider).capabilities]
        alt = f" Connections that have it: {', '.join(able)}." if able else ""
        alt += f" {WITHOUT[needs]}" if needs in WITHOUT else ""
        return CapabilityError(
            f"{get_provider(conn.provider).title} connection {conn.name!r} has no "
            f"{needs.replace('_', ' ')} capability.{alt}",
            provider=conn.provider,
            capability=needs,
        )

    @overload
    def connector(self, name: str | None = None) -> Connector: ...
    @overload
    def connector(self, name: str | None, needs: type[C]) -> C: ...

    def connector(self, name: str | None = None, needs: type[Connector] | None = None) -> Connector:
        """The (cached) connector of `connection(name, needs)`, typed as the capability asked for."""
        from crm_mcp.connectors.base import Connector, capability_name, require

        conn = self.connection(name, capability_name(needs) if needs is not None else None)
        if conn.name not in self._connectors:
            from crm_mcp.connectors.registry import build_connector

            options = {**conn.options, **self._connector_overrides}
            if self.settings.redis_url:  # one rate-limit budget and breaker across processes
                options.setdefault("redis_url", self.settings.redis_url)
            if options.get("client_id") or options.get("client_secret"):
                options.setdefault("token_store", _DatabaseTokenStore(self))
            self._connectors[conn.name] = build_connector(conn.provider, conn.name, options)
        return require(self._connectors[conn.name], needs or Connector)

    def cached_connectors(self) -> dict[str, Connector]:
        return dict(self._connectors)

    # -- database ----------------------------------------------------------------------------
    async def database(self) -> Database:
        if self._db is None:
            async with self._db_lock:
                if self._db is None:
                    from crm_mcp.state.db import Database
                    from crm_mcp.state.files import private_dir

                    if not self.settings.database_url:  # the default lives in the state dir: 0700
                        private_dir(self.settings.state_dir)
                    db = Database(self.settings.resolved_database_url())
                    await db.upgrade()
                    self._db = db
        return self._db

    async def warm_up(self) -> None:
        """Import the heavy modules off the event loop, then open and migrate the database; then
        freeze the start-up heap (see `_freeze_startup_heap`)."""
        await asyncio.to_thread(_import_heavy)
        await self.database()
        _freeze_startup_heap()

    async def aclose(self) -> None:
        for connector in self._connectors.values():
            try:
                await connector.aclose()
                # a Redis-shared limiter owns a Redis client (see connectors.shared_state)
                limiter = getattr(getattr(connector, "client", None), "limiter", None)
                close_limiter = getattr(limiter, "aclose", None)
                if close_limiter is not None:
                    await close_limiter()
            except Exception:  # pragma: no cover - best effort on shutdown
                log.debug("connector close failed", exc_info=True)
        self._connectors.clear()
        if self._db is not None:
            await self._db.dispose()
            self._db = None

    def describe(self) -> dict[str, Any]:
        return {
            "database": redact_url(self.settings.resolved_database_url()),
            "connections": [{"name": c.name, "provider": c.provider} for c in self.connections()],
        }


def _can(provider: Any, needs: str | None) -> bool:
    """Whether a provider has a CRM API at all and, if asked, the capability `needs`."""
    return provider.connector is not None and (needs is None or needs in provider.capabilities)


class _DatabaseTokenStore:
    """OAuth tokens persisted encrypted in the database (rotated refresh tokens survive restarts).

    The connector is built synchronously, the database opens asynchronously: this adapter opens
    it (and the encryption key, from CRM_MCP_SECRET_KEY or the state dir) on first use.
    """

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._store: Any = None

    async def _get(self) -> Any:
        if self._store is None:
            from crm_mcp.state.credentials import EncryptedTokenStore, Keyring

            s = self._rt.settings
            secret = s.secret_key.get_secret_value() if s.secret_key else None
            keys = await asyncio.to_thread(
                Keyring.from_settings, secret, s.state_dir, s.previous_secret_keys()
            )  # current + previous keys: a rotation (`crm-mcp secrets rotate`) needs no downtime
            self._store = EncryptedTokenStore(await self._rt.database(), keys)
        return self._store

    async def load_tokens(self, provider: str, connection: str) -> dict[str, Any] | None:
        return await (await self._get()).load_tokens(provider, connection)  # type: ignore[no-any-return]

    async def save_tokens(self, provider: str, connection: str, tokens: dict[str, Any]) -> None:
        await (await self._get()).save_tokens(provider, connection, tokens)

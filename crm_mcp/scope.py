"""Who is calling: the principal an MCP request acts for, and what it may see and do.

One context variable holds the current `Principal`. The server sets it for each MCP request
(`crm_mcp.server.principals`, from the access token and the `[principals.<name>]` tables); every
other place reads it through the helpers here, so tenant isolation is one rule applied where
connections are resolved (`Runtime.connections` / `Runtime.connection`) and where stored
operations, dead letters and status are read (`crm_mcp.views`, `crm_mcp.sync.retry`).

Outside an MCP request (the worker, webhooks, the CLI, stdio) the principal is `LOCAL`: the
machine's own user, with every connection and both scopes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

READ_SCOPE = "crm:read"
WRITE_SCOPE = "crm:write"
ALL_SCOPES = frozenset({READ_SCOPE, WRITE_SCOPE})


@dataclass(frozen=True)
class Principal:
    """A caller: its name, its scopes, and the connections it may use (None: every one)."""

    name: str
    scopes: frozenset[str] = ALL_SCOPES
    connections: frozenset[str] | None = None

    @property
    def unrestricted(self) -> bool:
        return self.connections is None

    def may_use(self, connection: str) -> bool:
        return self.connections is None or connection in self.connections

    def visible(self, names: Iterable[str]) -> list[str]:
        """`names` this principal may see, in their order."""
        return [n for n in names if self.may_use(n)]

    @property
    def can_write(self) -> bool:
        return WRITE_SCOPE in self.scopes

    def cache_key(self) -> str:
        """A key for read models cached per visible set of connections (status snapshots)."""
        return "*" if self.connections is None else ",".join(sorted(self.connections))


LOCAL = Principal("local")

_current: ContextVar[Principal] = ContextVar("crm_mcp_principal", default=LOCAL)


def current_principal() -> Principal:
    """The principal of the MCP request being handled, or `LOCAL` outside one."""
    return _current.get()


def connection_filter() -> frozenset[str] | None:
    """The connections the current principal may see, or None when it may see all of them: pass
    this to a query that selects by connection."""
    return _current.get().connections


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Run the block (and every task it starts) as `principal`."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)


def scoped_key(key: str) -> str:
    """The idempotency key as stored: a tenant's keys live in a namespace of their own (a short
    hash of the principal's name), so two tenants using the same key (an order number) never
    collide, and a key one used tells another nothing. The local user and single-tenant
    deployments keep keys as given."""
    p = _current.get()
    if p.unrestricted:
        return key
    return f"{hashlib.sha256(p.name.encode()).hexdigest()[:12]}:{key}"


def write_refusal(tool: str) -> str | None:
    """The message refusing `tool` (a write) to a principal without `crm:write`, or None if allowed."""
    p = _current.get()
    if p.can_write:
        return None
    return (
        f"Forbidden: {tool} changes data and this access token lacks the {WRITE_SCOPE} scope "
        f"(it has: {', '.join(sorted(p.scopes)) or 'no scopes'}). Retrying will not help. "
        f"Next: use read tools only, or ask for a token with {WRITE_SCOPE}."
    )

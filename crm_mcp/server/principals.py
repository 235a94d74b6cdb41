"""The principal of each MCP request, from its access token and `[principals.<name>]` tables.

The SDK's bearer middleware leaves the verified `AccessToken` in a context variable; its
`client_id` names the principal (a JWT's `sub`, or a static token's configured name) and its
`scopes` say what it may do. `PrincipalMiddleware` turns that into a `crm_mcp.scope.Principal`
and sets it as the current principal while the request is handled, so every connection look-up
and every read of stored operations inside the request is scoped to it.

Mapping (docs/tenants.md):

- no `[principals.*]` table at all: a single-tenant deployment; every principal may use every
  connection (its token's scopes still apply);
- any `[principals.*]` table: each principal gets exactly the connections its table lists, and a
  principal without a table gets none (fail closed);
- `connections = ["*"]`: every connection (an operator; also the only principals that may read
  the server-wide /metrics and /readyz once tables exist);
- no token (stdio, or HTTP on loopback without a token): the local user, principal `local`, with
  every connection and both scopes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.responses import JSONResponse

from crm_mcp.scope import LOCAL, Principal, acting_as

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken
    from starlette.requests import Request
    from starlette.responses import Response

    from crm_mcp.settings import PrincipalSettings, Settings


def principal_for(token: AccessToken | None, mapping: dict[str, PrincipalSettings]) -> Principal:
    """The principal a request with `token` acts as, under the `[principals.*]` `mapping`."""
    if token is None:
        return LOCAL
    name = token.client_id or "default"
    scopes = frozenset(token.scopes or ())
    if not mapping:
        return Principal(name, scopes, None)
    table = mapping.get(name)
    if table is None:
        return Principal(name, scopes, frozenset())
    if table.scopes is not None:
        scopes &= frozenset(table.scopes)
    if "*" in table.connections:  # an operator: every connection
        return Principal(name, scopes, None)
    return Principal(name, scopes, frozenset(table.connections))


class PrincipalMiddleware:
    """MCP server middleware: every inbound message is handled as its token's principal."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._mapping: dict[str, PrincipalSettings] | None = None

    def mapping(self) -> dict[str, PrincipalSettings]:
        if self._mapping is None:  # read once, on the first authenticated request
            self._mapping = self._settings.principals()
        return self._mapping

    def current(self) -> Principal:
        token = get_access_token()
        return LOCAL if token is None else principal_for(token, self.mapping())

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        with acting_as(self.current()):
            return await call_next(ctx)


def install(server: Any, settings: Settings) -> PrincipalMiddleware:
    """Put the principal middleware outermost, so everything after it sees the principal."""
    middleware = PrincipalMiddleware(settings)
    server.middleware.insert(0, middleware)
    return middleware


Endpoint = Callable[["Request"], Awaitable["Response"]]


def scoped_endpoint(endpoint: Endpoint, settings: Settings) -> Endpoint:
    """An HTTP endpoint (the dashboard's API) run as the principal of the request's bearer token,
    like an MCP request: a tenant's token shows that tenant's data only."""
    resolver = PrincipalMiddleware(settings)

    async def scoped(request: Request) -> Response:
        user = request.scope.get("user")
        token = user.access_token if isinstance(user, AuthenticatedUser) else None
        with acting_as(LOCAL if token is None else principal_for(token, resolver.mapping())):
            return await endpoint(request)

    return scoped


def operator_only(endpoint: Endpoint, settings: Settings) -> Endpoint:
    """An operator endpoint (/metrics, /readyz: server-wide, every tenant's connections): a
    principal limited to some connections is refused with 403."""
    resolver = PrincipalMiddleware(settings)

    async def guarded(request: Request) -> Response:
        user = request.scope.get("user")
        token = user.access_token if isinstance(user, AuthenticatedUser) else None
        if token is not None and not principal_for(token, resolver.mapping()).unrestricted:
            refusal = {"error": "forbidden", "error_description": "This endpoint is for the operator."}
            return JSONResponse(refusal, 403)
        return await endpoint(request)

    return guarded

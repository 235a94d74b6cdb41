"""The worker's own HTTP server: `crm-mcp worker --http-port N [--http-host H]`.

A worker-only deployment (servers on stdio, or workers scaled out beside them) is observable on
its own: one Starlette app serves `/healthz`, `/readyz`, `/metrics`, `/dashboard` (page, API,
retry) and `/webhooks/{provider}/{connection}`, built from the very routes `serve` mounts
(`routes.ops_routes`, `dashboard.routes`, `webhooks.routes`). Its delivery histogram and quota
gauges are the delivering process's own.

The same rules as `serve --transport http` (`crm_mcp.server.security.http_auth`): beyond loopback
it needs a bearer credential (CRM_MCP_HTTP_TOKEN, ..._TOKENS or OAuth) and refuses to start
without one; a configured credential is required by /readyz, /metrics and the dashboard API on
every bind; /healthz and the dashboard shell stay open, and webhooks carry their own signatures.
The dashboard checks Host and Origin as it does under `serve`, and webhooks are held to the same
rate per connection and source IP (CRM_MCP_WEBHOOK_RATE_LIMIT_PER_MINUTE / _BURST: 429 beyond).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware

if TYPE_CHECKING:
    from crm_mcp.runtime import Runtime
    from crm_mcp.server.security import HttpAuth


def build_worker_app(rt: Runtime, *, host: str, auth: HttpAuth | None) -> Starlette:
    """The worker's app for a bind `host`; `auth` from `security.http_auth` (None: open), so the
    worker accepts exactly the bearer tokens `serve` accepts (static tokens, OAuth)."""
    from crm_mcp.server import dashboard, limits, routes, webhooks

    required = auth is not None
    middleware: list[Middleware] = []
    if auth is not None:
        from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
        from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
        from starlette.middleware.authentication import AuthenticationMiddleware

        backend = BearerAuthBackend(auth.verifier())
        middleware = [
            Middleware(AuthenticationMiddleware, backend=backend),
            Middleware(AuthContextMiddleware),
        ]
    app = Starlette(
        routes=[
            *routes.ops_routes(rt, require_token=required),
            *dashboard.routes(rt, require_token=required, bind_host=host),
            *webhooks.routes(rt),
        ],
        middleware=middleware,
    )
    # the webhook rate per connection and source IP, as under `serve` (there is no /mcp here)
    return limits.install(app, rt.settings, auth_required=required, max_body=webhooks.MAX_BODY_BYTES)

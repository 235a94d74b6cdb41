"""HTTP routes beside /mcp: /healthz (liveness), /readyz (readiness), /metrics (Prometheus text,
docs/observability.md; tool calls are counted by a middleware installed here).

/healthz stays open: it says only that the process answers, and orchestrators probe it without
credentials. /readyz and /metrics tell an outsider how the sync is doing and cost database reads,
so when the server requires a bearer token they require it too (401 without). Both serve the
status from a snapshot at most `OPS_STATUS_MAX_AGE_S` old, so polling them, however often, costs
the database at most one status computation per interval (and per change in this process).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_mcp.observability.middleware import ToolCallCounter
from crm_mcp.server.principals import operator_only

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

OPS_STATUS_MAX_AGE_S = 2.0
Endpoint = Callable[[Request], Awaitable[Response]]


def register(server: MCPServer[Any], rt: Runtime, *, require_token: bool = False) -> None:
    """Add the ops routes; with `require_token`, /readyz and /metrics answer only authenticated
    requests (the SDK's bearer middleware, installed with the token verifier, authenticates)."""
    mount(server, ops_routes(rt, require_token=require_token))
    server.middleware.append(ToolCallCounter(server, lambda: rt.metrics))  # feeds /metrics


def mount(server: MCPServer[Any], route_list: list[Route]) -> None:
    """Add Starlette routes to the MCP server's HTTP app, as its `custom_route` decorator does."""
    for route in route_list:
        server.custom_route(route.path, methods=sorted(route.methods or ()))(route.endpoint)


def ops_routes(rt: Runtime, *, require_token: bool = False) -> list[Route]:
    """/healthz, /readyz and /metrics as Starlette routes, for the MCP server's app (`register`)
    and the worker's (`crm-mcp worker --http-port N`, `crm_mcp.server.worker_http`)."""
    operator = functools.partial(operator_only, settings=rt.settings)
    return [
        Route("/healthz", healthz, methods=["GET"]),
        # server-wide: a tenant's token (limited to some connections) is refused (docs/tenants.md)
        Route("/readyz", _guarded(operator(readyz_for(rt)), require_token), methods=["GET"]),
        Route("/metrics", _guarded(operator(metrics_for(rt)), require_token), methods=["GET"]),
    ]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _guarded(endpoint: Endpoint, require_token: bool) -> Endpoint:
    if not require_token:
        return endpoint

    async def guarded(request: Request) -> Response:
        if not isinstance(request.scope.get("user"), AuthenticatedUser):
            error = 'Bearer error="invalid_token", error_description="Authentication required"'
            return JSONResponse(
                {"error": "invalid_token", "error_description": "Authentication required"},
                401,
                headers={"WWW-Authenticate": error},
            )
        return await endpoint(request)

    return guarded


def readyz_for(rt: Runtime) -> Endpoint:
    async def readyz(request: Request) -> Response:
        from crm_mcp.views import current_status  # lazy: SQLAlchemy stays off start-up

        checks: dict[str, Any] = {}
        try:
            status = await current_status(rt, max_age_s=OPS_STATUS_MAX_AGE_S)
        except Exception as exc:
            return JSONResponse({"ready": False, "checks": {"database": f"error: {type(exc).__name__}"}}, 503)
        checks["database"] = "ok"
        checks["worker"] = "ok" if status.live_workers > 0 else "no live worker heartbeat"
        open_breakers = [
            n for n, s in status.connectors.items() if s.get("breaker", {}).get("state") == "open"
        ]
        checks["breakers"] = "ok" if not open_breakers else f"open: {', '.join(open_breakers)}"
        checks["connections"] = _connections_ready(status.connectors)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"ready": ready, "verdict": status.verdict, "checks": checks}, 200 if ready else 503
        )

    return readyz


def _connections_ready(connectors: dict[str, Any]) -> str:
    """Deep readiness: "ok", or the connections whose last check (in the status snapshot) found
    their credentials or tenant refused (an expired or revoked token), each with what was found.
    An unreachable CRM is the breaker's business, not a configuration fault."""
    failing = [
        f"{name} ({pre['failed']}: {pre['problem']})"
        for name, state in sorted(connectors.items())
        if (pre := state.get("preflight")) and pre.get("failed") not in (None, "reachable")
    ]
    return "ok" if not failing else "not ready: " + "; ".join(failing)


def metrics_for(rt: Runtime) -> Endpoint:
    """Prometheus text from the runtime's own registry; the outbox gauges are set per scrape."""

    async def metrics(request: Request) -> Response:
        from crm_mcp.views import current_status  # lazy: SQLAlchemy stays off start-up

        rt.metrics.update_status(await current_status(rt, max_age_s=OPS_STATUS_MAX_AGE_S))
        body, content_type = rt.metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    return metrics

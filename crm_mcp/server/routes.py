"""HTTP routes beside /mcp: /healthz (liveness), /readyz (readiness), /metrics (Prometheus text).

/healthz stays open: it says only that the process answers, and orchestrators probe it without
credentials. /readyz and /metrics tell an outsider how the sync is doing and cost database reads,
so when the server requires a bearer token they require it too (401 without). Both serve the
status from a snapshot at most `OPS_STATUS_MAX_AGE_S` old, so polling them, however often, costs
the database at most one status computation per interval (and per change in this process).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

OPS_STATUS_MAX_AGE_S = 2.0
Endpoint = Callable[[Request], Awaitable[Response]]


def register(server: MCPServer[Any], rt: Runtime, *, require_token: bool = False) -> None:
    """Add the ops routes; with `require_token`, /readyz and /metrics answer only authenticated
    requests (the SDK's bearer middleware, installed with the token verifier, authenticates)."""
    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/readyz", methods=["GET"])(_guarded(readyz_for(rt), require_token))
    server.custom_route("/metrics", methods=["GET"])(_guarded(metrics_for(rt), require_token))


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
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"ready": ready, "verdict": status.verdict, "checks": checks}, 200 if ready else 503
        )

    return readyz


def metrics_for(rt: Runtime) -> Endpoint:
    async def metrics(request: Request) -> Response:
        from crm_mcp.views import current_status  # lazy: SQLAlchemy stays off start-up

        s = await current_status(rt, max_age_s=OPS_STATUS_MAX_AGE_S)
        lines = ["# TYPE crm_mcp_operations gauge"]
        lines += [f'crm_mcp_operations{{status="{k}"}} {v}' for k, v in s.totals.items()]
        lines += [
            "# TYPE crm_mcp_dead_letters gauge",
            f"crm_mcp_dead_letters {s.dead_letters}",
            "# TYPE crm_mcp_success_rate gauge",
            f"crm_mcp_success_rate {s.success_rate if s.success_rate is not None else 'NaN'}",
            "# TYPE crm_mcp_oldest_pending_seconds gauge",
            f"crm_mcp_oldest_pending_seconds {s.oldest_pending_age_s or 0}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return metrics

"""HTTP routes beside /mcp: /healthz (liveness), /readyz (readiness), /metrics (Prometheus text)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @server.custom_route("/readyz", methods=["GET"])
    async def readyz(request: Request) -> Response:
        from crm_mcp.views import current_status

        checks: dict[str, Any] = {}
        try:
            status = await current_status(rt)
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

    @server.custom_route("/metrics", methods=["GET"])
    async def metrics(request: Request) -> Response:
        from crm_mcp.views import current_status

        s = await current_status(rt)
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

"""Where requests enter: count MCP tool calls and webhook deliveries into a runtime's metrics.

Label values come from names this server knows (its tools, its connections), never straight from
the request, so a caller cannot grow the metrics without bound by inventing names.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.requests import Request
    from starlette.responses import Response

    from .metrics import Metrics

UNKNOWN = "unknown"  # the label value for a name no configured connection / tool has

# webhook answer -> (outcome, reason); 200s are told apart by their body (see webhook_outcome)
_WEBHOOK_REASONS = {
    400: "malformed",
    401: "signature",
    403: "foreign_tenant",
    404: "unknown_connection",
    413: "too_large",
    415: "unsupported_media_type",
    429: "busy",
    503: "busy",
}


def webhook_outcome(status: int, body: bytes) -> tuple[str, str]:
    """(outcome, reason) of a webhook answer: accepted (stored | duplicate) or rejected (why)."""
    if 200 <= status < 300:
        try:
            duplicate = bool(json.loads(body or b"{}").get("duplicate"))
        except (ValueError, AttributeError):
            duplicate = False
        return "accepted", "duplicate" if duplicate else "stored"
    return "rejected", _WEBHOOK_REASONS.get(status, "busy" if status >= 500 else f"http_{status}")


def _is_error(result: Any) -> bool:
    if isinstance(result, dict):
        return result.get("isError") is True
    return bool(getattr(result, "is_error", False))


class ToolCallCounter:
    """MCP server middleware: `crm_mcp_tool_calls_total{tool, outcome}` with outcome `success`,
    `error` (the tool answered with an error) or `invalid_arguments` (refused before it ran)."""

    def __init__(self, server: MCPServer[Any], metrics: Callable[[], Metrics]) -> None:
        self._server = server
        self._metrics = metrics
        self._known: set[str] = set()

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        try:
            result = await call_next(ctx)
        except ValidationError:
            await self._count(ctx, "invalid_arguments")
            raise
        except MCPError:
            await self._count(ctx, "error")
            raise
        await self._count(ctx, "error" if _is_error(result) else "success")
        return result

    async def _count(self, ctx: Any, outcome: str) -> None:
        # after the call: a deferred catalogue is complete by then, so every tool of ours is known
        name = ctx.params.get("name") if isinstance(ctx.params, dict) else None
        if isinstance(name, str) and name not in self._known:
            self._known = {tool.name for tool in await self._server.list_tools()}
        tool = name if isinstance(name, str) and name in self._known else UNKNOWN
        self._metrics().tool_called(tool, outcome)


Endpoint = Callable[["Request"], Awaitable["Response"]]


def count_webhooks(
    endpoint: Endpoint, metrics: Callable[[], Metrics], connections: Callable[[], set[str]]
) -> Endpoint:
    """`endpoint` (the webhook route) counting each answer in
    `crm_mcp_webhook_events_total{connection, outcome, reason}`."""

    async def counted(request: Request) -> Response:
        response = await endpoint(request)
        outcome, reason = webhook_outcome(response.status_code, bytes(getattr(response, "body", b"")))
        name = request.path_params.get("connection", "")
        metrics().webhook(name if name in connections() else UNKNOWN, outcome, reason)
        return response

    return counted

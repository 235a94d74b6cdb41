"""POST /webhooks/{provider}/{connection}: the HTTP edge of the inbox.

Wiring only. The route finds the connection (404 when it does not exist or belongs to another
provider), refuses any body not declared as JSON (415: every supported sender posts
`application/json`, and a form or `text/plain` body is what a browser can send cross-site without
a preflight), reads at most `MAX_BODY_BYTES` (413 beyond, before the rest is even read), and hands
the raw bytes to `crm_mcp.sync.inbox.receive`, which verifies, dedupes and stores. Processing then
runs as a background task after the response, so the sender gets its 2xx as soon as the event is
committed; the worker loop picks up anything a crash left behind.

The same handler serves the MCP server (`register`) and the standalone receiver that
`crm-mcp worker --webhooks-port N` runs (`build_webhook_app`). Heavy modules (SQLAlchemy, the
crypto backend) are imported on the first delivery, so building the MCP server stays fast.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_mcp.errors import ConfigurationError
from crm_mcp.observability.middleware import count_webhooks

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/{provider}/{connection}"
MAX_BODY_BYTES = 256 * 1024  # the same limit as crm_mcp.sync.inbox.MAX_BODY_BYTES


class _TooLarge(Exception):
    pass


def is_json_content_type(value: str | None) -> bool:
    """`application/json` or a `+json` type (parameters such as charset allowed); nothing else."""
    media = (value or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing early on Content-Length and while streaming (chunked senders)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def make_handler(rt: Runtime, *, process_inline: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """The request handler bound to a runtime (its connections, database and clock)."""

    async def process_after(db: Any) -> None:
        from crm_mcp.sync.inbox import process_pending

        try:
            await process_pending(db, now=rt.clock())
        except Exception:  # the worker loop retries; the event is already stored
            logger.warning("inbox processing after a webhook failed", exc_info=True)

    async def handle(request: Request) -> Response:
        from crm_mcp.connectors.registry import webhook_adapter
        from crm_mcp.sync.inbox import receive

        provider = request.path_params["provider"]
        name = request.path_params["connection"]
        if webhook_adapter(provider) is None:
            return JSONResponse({"error": f"unknown webhook provider {provider!r}"}, 404)
        try:
            conn = rt.connection(name)
        except ConfigurationError:
            return JSONResponse({"error": f"no connection named {name!r}"}, 404)
        if conn.provider != provider:
            return JSONResponse({"error": f"connection {name!r} is not a {provider} connection"}, 404)
        if not is_json_content_type(request.headers.get("content-type")):
            return JSONResponse({"error": "send the webhook as Content-Type: application/json"}, 415)
        try:
            body = await _read_limited(request, MAX_BODY_BYTES)
        except _TooLarge:
            return JSONResponse({"error": f"webhook body exceeds {MAX_BODY_BYTES} bytes"}, 413)
        db = await rt.database()
        receipt = await receive(
            db,
            provider=provider,
            connection=conn.name,
            options=conn.options,
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            body=body,
            now=rt.clock(),
            max_body=MAX_BODY_BYTES,
        )
        task = BackgroundTask(process_after, db) if process_inline and receipt.stored else None
        return JSONResponse(receipt.body, receipt.status, headers=receipt.headers or None, background=task)

    return count_webhooks(handle, lambda: rt.metrics, lambda: {c.name for c in rt.connections()})


def register(server: MCPServer[Any], rt: Runtime) -> None:
    """Add the webhook route to the MCP server's HTTP app (it carries its own signatures, no token)."""
    server.custom_route(WEBHOOK_PATH, methods=["POST"])(make_handler(rt))


def routes(rt: Runtime, *, process_inline: bool = True) -> list[Route]:
    """The webhook route, for the worker's HTTP app (`crm-mcp worker --http-port N`)."""
    return [Route(WEBHOOK_PATH, make_handler(rt, process_inline=process_inline), methods=["POST"])]


def build_webhook_app(rt: Runtime, *, process_inline: bool = True) -> Starlette:
    """A Starlette app with only the webhook route, for `crm-mcp worker --webhooks-port N`, held to
    the same rate per connection and source IP as under `serve` (CRM_MCP_WEBHOOK_RATE_LIMIT_*)."""
    from crm_mcp.server import limits

    app = Starlette(routes=routes(rt, process_inline=process_inline))
    return limits.install(app, rt.settings, auth_required=False, max_body=MAX_BODY_BYTES)

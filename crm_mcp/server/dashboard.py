"""The operator dashboard: `/dashboard`, a static page, and its JSON API under `/dashboard/api/`.

Wiring only; every figure comes from the read models the MCP surface uses, so the page and an
agent never disagree:

- `GET /dashboard/api/state`: `current_status` (what `sync://status` serves), the first page of
  `dead_letter_page` (what `sync://dead-letter` serves) and a short success-rate history sampled
  from those same snapshots;
- `GET /dashboard/api/operations/{id}`: `operation_view` (what `sync://operations/{id}` serves);
- `POST /dashboard/api/retry`: `crm_mcp.sync.retry.retry_failed`, the code behind `retry_failed_sync`.

The page polls `state` every 2 s (the issue allows polling at that rate; a poll costs at most one
status computation per `STATUS_MAX_AGE_S` however many pages are open, and unlike a held-open
stream it never keeps `serve` from shutting down). The assets ship in the package: no build step,
no CDN.

Who may call: the API answers only what `/mcp` answers. The Host and Origin headers pass the same
DNS-rebinding check as the MCP transports (`crm_mcp.server.security.transport_security`); with an
HTTP token configured, every API call needs it as `Authorization: Bearer` (the page asks for it
once and keeps it in the tab's sessionStorage). The shell page and its assets hold no data and are
served without the token, since a browser cannot attach one to a navigation. The retry POST also
requires `Content-Type: application/json` and an `X-CRM-MCP-Dashboard` header: a cross-site form
or `fetch` can send neither without a CORS preflight, which this server never grants.
"""

from __future__ import annotations

import functools
import json
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from crm_mcp.errors import CRMError
from crm_mcp.scope import current_principal
from crm_mcp.server.principals import scoped_endpoint
from crm_mcp.server.routes import mount
from crm_mcp.server.security import answered_hosts, transport_security
from crm_mcp.sync.retry import retry_failed

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
STATUS_MAX_AGE_S = 2.0  # the same snapshot age as /readyz and /metrics
DEAD_LETTER_PAGE = 100  # as many as sync://dead-letter shows
HISTORY_POINTS = 720
HISTORY_EVERY_S = 5.0  # one success-rate sample per 5 s: the chart spans an hour of watching
RETRY_HEADER = "x-crm-mcp-dashboard"
MAX_RETRY_BODY = 4096

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def routes(rt: Runtime, *, require_token: bool, bind_host: str) -> list[Route]:
    """The page, its assets and the API as Starlette routes: mounted on the MCP server's HTTP app
    by `register`, and served by `crm-mcp worker --http-port N` (`crm_mcp.server.worker_http`).
    With `require_token`, the app must authenticate bearer tokens (the SDK's `BearerAuthBackend`
    sets `request.user`); the API refuses requests it did not authenticate."""
    board = Dashboard(rt, require_token=require_token, bind_host=bind_host)
    scoped = functools.partial(scoped_endpoint, settings=rt.settings)
    return [
        Route("/dashboard", board.page, methods=["GET"]),
        Route("/dashboard/", board.slash, methods=["GET"]),
        Route("/dashboard/assets/{name}", board.asset, methods=["GET"]),
        # the API acts as the token's principal: a tenant sees its own connections (docs/tenants.md)
        Route("/dashboard/api/state", scoped(board.state), methods=["GET"]),
        Route("/dashboard/api/operations/{op_id}", scoped(board.operation), methods=["GET"]),
        Route("/dashboard/api/retry", scoped(board.retry), methods=["POST"]),
    ]


def register(server: MCPServer[Any], rt: Runtime, *, require_token: bool, bind_host: str) -> None:
    """Mount the page, its assets and the API on the MCP server's HTTP app."""
    mount(server, routes(rt, require_token=require_token, bind_host=bind_host))


class Dashboard:
    """The dashboard's request handlers for one runtime."""

    def __init__(self, rt: Runtime, *, require_token: bool, bind_host: str) -> None:
        self.rt = rt
        self.require_token = require_token
        self.guard = TransportSecurityMiddleware(transport_security(bind_host, answered_hosts(rt.settings)))
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_POINTS)
        self._sampled_at = float("-inf")

    # -- the page -------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        if refused := await self.guard.validate_request(request):
            return refused
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)

    async def slash(self, request: Request) -> Response:
        return RedirectResponse("../dashboard", status_code=308)

    async def asset(self, request: Request) -> Response:
        if refused := await self.guard.validate_request(request):
            return refused
        name = request.path_params["name"]
        if name not in ASSETS:  # a fixed list: no path from the URL ever reaches the file system
            return Response("Not found", status_code=404)
        return FileResponse(STATIC_DIR / name, media_type=ASSETS[name], headers=_PAGE_HEADERS)

    # -- the API --------------------------------------------------------------------------------
    async def state(self, request: Request) -> Response:
        if refused := await self._refuse(request):
            return refused
        from crm_mcp.views import current_status, dead_letter_page  # lazy: SQLAlchemy off start-up

        try:
            status = await current_status(self.rt, max_age_s=STATUS_MAX_AGE_S)
            dead = await dead_letter_page(
                self.rt, connection=None, limit=DEAD_LETTER_PAGE, offset=0, with_history=False
            )
        except Exception as exc:  # the page shows it and keeps polling
            return _json({"error": f"status unavailable: {type(exc).__name__}"}, 503)
        operator = current_principal().unrestricted
        if operator:  # the history is the whole server's; a tenant's view is not sampled into it
            self._sample(status)
        return _json(
            {
                "status": status.model_dump(mode="json"),
                "dead_letters": dead.model_dump(mode="json"),
                "history": list(self.history) if operator else [],
                "auth_required": self.require_token,
            }
        )

    async def operation(self, request: Request) -> Response:
        if refused := await self._refuse(request):
            return refused
        from crm_mcp.views import operation_view  # lazy: SQLAlchemy off start-up

        op_id = request.path_params["op_id"]
        if len(op_id) > 64:
            return _json({"error": "not found"}, 404)
        view = await operation_view(self.rt, op_id)
        if view is None:
            return _json({"error": f"No operation {op_id!r}."}, 404)
        return _json(view.model_dump(mode="json"))

    async def retry(self, request: Request) -> Response:
        """Requeue one dead operation (`operation_id`) or all of a `connection`'s, as
        `retry_failed_sync` does (the same function); `dry_run` only counts them."""
        if refused := await self._refuse(request, post=True):
            return refused
        if request.headers.get(RETRY_HEADER) is None:
            return _json({"error": f"Send the {RETRY_HEADER} header (the dashboard does)."}, 403)
        body = await request.body()
        try:
            args = _retry_args(body)
            outcome = await retry_failed(self.rt, **args)
        except (ValueError, CRMError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json(
            {
                "count": len(outcome.ops),
                "dry_run": outcome.dry_run,
                "message": outcome.message,
                "requeued": [
                    {"id": op.id, "action": op.action, "connection": op.connection, "status": op.status}
                    for op in outcome.ops
                ],
            }
        )

    # -- helpers --------------------------------------------------------------------------------
    async def _refuse(self, request: Request, *, post: bool = False) -> Response | None:
        """A response refusing the request (Host/Origin, Content-Type on POST, token), or None."""
        if refused := await self.guard.validate_request(request, is_post=post):
            return refused
        if self.require_token and not isinstance(request.scope.get("user"), AuthenticatedUser):
            challenge = 'Bearer error="invalid_token", error_description="Authentication required"'
            return JSONResponse(
                {"error": "invalid_token", "error_description": "Authentication required"},
                401,
                headers={"WWW-Authenticate": challenge, **_API_HEADERS},
            )
        return None

    def _sample(self, status: Any) -> None:
        now = time.monotonic()
        if now - self._sampled_at < HISTORY_EVERY_S:
            return
        self._sampled_at = now
        self.history.append(
            {
                "at": status.generated_at.isoformat(),
                "success_rate": status.success_rate,
                "succeeded": status.totals.get("succeeded", 0),
                "dead_letters": status.dead_letters,
                "pending": status.pending_backlog,
            }
        )


def _retry_args(body: bytes) -> dict[str, Any]:
    """The retry selection from a JSON body: exactly one of operation_id, connection, all.

    Raises:
        ValueError: the body is too large, not a JSON object, or selects nothing or several.
    """
    if len(body) > MAX_RETRY_BODY:
        raise ValueError("Request body too large.")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise ValueError("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise ValueError("The body must be a JSON object.")
    op_id, connection, all_ = data.get("operation_id"), data.get("connection"), data.get("all") is True
    chosen = [x for x in (op_id, connection, all_) if x]
    if len(chosen) != 1:
        raise ValueError("Say what to retry: exactly one of operation_id, connection, or all=true.")
    for value in (op_id, connection):
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= 128):
            raise ValueError("operation_id and connection are non-empty strings.")
    return {
        "operation_id": op_id,
        "connection": connection,
        "all_": all_,
        "dry_run": data.get("dry_run") is True,
    }


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status, headers=_API_HEADERS)

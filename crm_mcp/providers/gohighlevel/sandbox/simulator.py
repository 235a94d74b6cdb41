"""A faithful local fake of the GoHighLevel (LeadConnector) API v2, served as a Starlette app.

Connectors and the sync engine are tested against this instead of patching the network, so it
reproduces what a client has to cope with: the ``Version`` header per service, NestJS error bodies,
201 on contact writes but 200 on appointments, ``succeded`` (sic), DELETE with a JSON body, 422 on
unknown body properties, custom fields written as ``{id|key, field_value}`` but read as
``{id, value}``, offset timestamps on appointments, per-location burst and daily rate limits with the
five ``X-RateLimit-*`` headers, and switchable faults (see :mod:`crm_mcp.sandbox.faults`).

This module is the documented entry point and the HTTP edge: the request pipeline (faults, auth,
rate limits, version), the ``/_sandbox`` control plane and ``GHLSandbox`` tying them together. The
endpoints are in :mod:`.api` (contacts and calendars in their own route modules),
the rules they apply in :mod:`.store` and :mod:`.contact_store`,
request schemas in :mod:`.schemas`, rate limits and stats in
:mod:`.limits`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_mcp.providers.gohighlevel.sandbox.api import GHLApi
from crm_mcp.providers.gohighlevel.sandbox.limits import RateLimiter, Stats
from crm_mcp.providers.gohighlevel.sandbox.oauth import GHLOAuth
from crm_mcp.sandbox.asgi import answer_after, buffered
from crm_mcp.sandbox.control import control_routes
from crm_mcp.sandbox.faults import FaultInjector, apply_fault

SANDBOX_TOKEN = "sandbox-ghl-token"  # noqa: S105 - a published test credential
SANDBOX_LOCATION_ID = "SbxLoc00000000000001"
SANDBOX_CALENDAR_ID = "SbxCal00000000000001"
SANDBOX_USER_ID = "SbxUsr00000000000001"
SANDBOX_TIMEZONE = "America/New_York"

CONTACTS_VERSION = "2021-07-28"
CALENDARS_VERSION = "2021-04-15"


@dataclass
class GHLSandboxConfig:
    token: str = SANDBOX_TOKEN
    location_id: str = SANDBOX_LOCATION_ID
    burst_max: int = 100
    burst_interval_ms: int = 10_000
    daily_limit: int = 200_000
    latency_s: float = 0.0  # every API answer leaves this long after its request arrived
    seed: int = 0


def _nest(status: int, message: str, error: str | None = None) -> bytes:
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error:
        body["error"] = error
    return json.dumps(body).encode()


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    head = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head + headers})
    await send({"type": "http.response.body", "body": body})


class _Pipeline:
    """Outer ASGI layer: latency, faults, auth, rate limit, Version header, stats, headers."""

    def __init__(self, app: ASGIApp, sandbox: GHLSandbox) -> None:
        self.app = app
        self.sb = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(("/_sandbox", "/oauth/")):
            await self.app(scope, receive, send)
            return
        try:
            await self._api_request(scope, receive, send, path)
        except asyncio.CancelledError:
            # Server shutdown while a slow/timeout fault sleeps: end quietly instead of letting
            # uvicorn print a traceback for a request nobody is waiting for any more.
            return

    async def _api_request(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        sb, cfg = self.sb, self.sb.config
        if cfg.latency_s > 0:
            send = answer_after(cfg.latency_s, send)
        route = sb.route_template(scope)
        receive = await buffered(receive)
        recorded: dict[str, bool] = {}

        def counted(faulted: bool = False) -> Send:
            """Count a response in the stats *before* it leaves: a client that reads the stats
            right after its answer must see that answer counted."""

            async def send_counted(message: Message) -> None:
                if message["type"] == "http.response.start" and not recorded:
                    recorded["yes"] = True
                    sb._stats.record(route, message["status"], faulted=faulted)
                await send(message)

            return send_counted

        fault = sb.faults.take(path)
        if fault is not None:
            status = await apply_fault(fault, counted(faulted=True), sb.limiter.peek(cfg.location_id))
            if status != -1:
                if not recorded:
                    sb._stats.record(route, status, faulted=True)
                return
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth != f"Bearer {cfg.token}" and not sb.oauth.accepts(auth):
            body = _nest(401, "Invalid token: access token is invalid", "Unauthorized")
            await _send_json(counted(), 401, body, sb.limiter.peek(cfg.location_id))
            return
        allowed, rl_headers = sb.limiter.hit(cfg.location_id)
        if not allowed:
            await _send_json(counted(), 429, _nest(429, "Too Many Requests"), rl_headers)
            return
        wanted = CALENDARS_VERSION if path.startswith("/calendars") else CONTACTS_VERSION
        version = headers.get(b"version", b"").decode("latin-1")
        if version != wanted:
            msg = "version header was not found" if not version else f"Version {version} is not supported"
            await _send_json(counted(), 400, _nest(400, msg, "Bad Request"), rl_headers)
            return
        send_counted = counted()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *rl_headers]}
            await send_counted(message)

        await self.app(scope, receive, send_with_headers)
        if not recorded:
            sb._stats.record(route, 500)


class GHLSandbox:
    """One simulated GHL location (sub-account) with its seeded calendars and custom fields."""

    def __init__(
        self, config: GHLSandboxConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ):
        self.config = config or GHLSandboxConfig()
        self.faults = FaultInjector(seed=self.config.seed)
        self.limiter = RateLimiter(self.config, clock)
        self._stats = Stats()
        self.lock = threading.RLock()
        self.api = GHLApi(
            location_id=self.config.location_id,
            calendar_id=SANDBOX_CALENDAR_ID,
            user_id=SANDBOX_USER_ID,
            tz=ZoneInfo(SANDBOX_TIMEZONE),
            seed=self.config.seed,
            lock=self.lock,
        )
        self._api_routes: list[Route] = self.api.routes()
        self.oauth = GHLOAuth(location_id=self.config.location_id, clock=clock)
        self.app = Starlette(
            routes=[*self._control_routes(), *self.oauth.routes(), *self._api_routes],
            middleware=[Middleware(_Pipeline, sandbox=self)],
            exception_handlers={HTTPException: self._http_error},
        )

    # ------------------------------------------------------------------ public API
    @property
    def stats(self) -> dict[str, Any]:
        return self._stats.as_dict()

    def snapshot(self) -> dict[str, Any]:
        return {**self.api.snapshot(), "stats": self.stats}

    def reset(self) -> None:
        """Clear data, stats, limits and faults; seeded calendars and custom fields stay."""
        self.api.clear()
        self._stats.reset()
        self.limiter.reset()
        self.faults.clear()

    def set_limits(
        self,
        burst_max: int | None = None,
        burst_interval_ms: int | None = None,
        daily_limit: int | None = None,
    ) -> None:
        if burst_max is not None:
            self.config.burst_max = burst_max
        if burst_interval_ms is not None:
            self.config.burst_interval_ms = burst_interval_ms
        if daily_limit is not None:
            self.config.daily_limit = daily_limit

    def route_template(self, scope: Scope) -> str:
        method = scope.get("method", "GET")
        for route in self._api_routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                path = route.path if route.path != "/contacts" else "/contacts/"
                return f"{method} {path if path != '/calendars' else '/calendars/'}"
        return f"{method} (unmatched)"

    # ------------------------------------------------------------------ plumbing
    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status in (404, 405):
            body = {
                "statusCode": 404,
                "message": f"Cannot {request.method} {request.url.path}",
                "error": "Not Found",
            }
            return JSONResponse(body, status_code=404)
        return JSONResponse(
            {"statusCode": status, "message": str(getattr(exc, "detail", ""))}, status_code=status
        )

    def _control_routes(self) -> list[Route]:
        def limits(body: dict[str, Any]) -> dict[str, Any]:
            self.set_limits(**body)
            c = self.config
            return {
                "burst_max": c.burst_max,
                "burst_interval_ms": c.burst_interval_ms,
                "daily_limit": c.daily_limit,
            }

        return control_routes(
            state=self.snapshot,
            stats=lambda: self.stats,
            faults=self.faults,
            reset=self.reset,
            limits=limits,
        )

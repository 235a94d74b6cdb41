"""The ASGI edge of the HubSpot simulator: what happens to a request before a handler sees it.

In order: a correlation id (``X-HubSpot-Correlation-Id`` on every answer, the same id as in any
error body), the simulated service time, switchable faults, the bearer-token check, the burst and
daily limits, the search API's own per-second limit, then the handler with the rate-limit headers
added to its answer. Every answered request is counted in the stats before it leaves, so a client
reading the stats right after an answer sees that answer counted.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_mcp.providers.hubspot.sandbox.errors import ApiError, error_body, new_correlation_id, rate_limit_body
from crm_mcp.providers.hubspot.sandbox.limits import BURST, Headers, Rejection
from crm_mcp.providers.hubspot.sandbox.stats import RouteInfo, Stats
from crm_mcp.sandbox.asgi import answer_after, buffered
from crm_mcp.sandbox.faults import Fault, apply_fault

if TYPE_CHECKING:  # only for annotations: the sandbox module imports this one
    from crm_mcp.providers.hubspot.sandbox.sandbox import HubSpotSandbox

_FAULT_CATEGORIES = {400: "VALIDATION_ERROR", 401: "INVALID_AUTHENTICATION", 403: "MISSING_SCOPES"}
_FAULT_CATEGORIES |= {404: "OBJECT_NOT_FOUND", 409: "CONFLICT", 429: "RATE_LIMITS"}


async def send_json(send: Send, status: int, body: bytes, headers: Headers) -> None:
    head = [
        (b"content-type", b"application/json;charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head + headers})
    await send({"type": "http.response.body", "body": body})


def with_headers(send: Send, extra: Headers) -> Send:
    async def send_with(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return send_with


class _Counted:
    """A ``send`` that records the answer's status in the stats as the answer starts."""

    def __init__(self, send: Send, stats: Stats, route: str) -> None:
        self.inner, self.stats, self.route = send, stats, route
        self.faulted = False
        self.done = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.finish(message["status"])
        await self.inner(message)

    def finish(self, status: int | None) -> None:
        if not self.done:
            self.done = True
            self.stats.record(self.route, status, faulted=self.faulted)


class Pipeline:
    """Outer ASGI layer of ``HubSpotSandbox.app``."""

    def __init__(self, app: ASGIApp, sandbox: HubSpotSandbox) -> None:
        self.app = app
        self.sb = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = new_correlation_id()
        scope["state"] = {**scope.get("state", {}), "correlation_id": cid}
        send = with_headers(send, [(b"X-HubSpot-Correlation-Id", cid.encode())])
        if scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send, cid)
        except asyncio.CancelledError:
            return  # server shutdown while a slow/timeout fault sleeps: nobody is waiting any more

    async def _serve(self, scope: Scope, receive: Receive, send: Send, cid: str) -> None:
        sb, path = self.sb, scope["path"]
        if sb.config.latency_s > 0:
            send = answer_after(sb.config.latency_s, send)
        oauth = path.startswith("/oauth/")
        info = RouteInfo(f"{scope['method']} {path}", "oauth") if oauth else sb.api.match(scope)
        receive = await buffered(receive)
        counted = _Counted(send, sb.counters, info.template)
        fault = sb.faults.take(path)
        if fault is not None and await self._fault(fault, counted, cid, scope):
            return
        if oauth:
            await self.app(scope, receive, counted)
        else:
            await self._api(scope, receive, counted, cid, info)
        counted.finish(500)

    async def _api(self, scope: Scope, receive: Receive, send: _Counted, cid: str, info: RouteInfo) -> None:
        sb = self.sb
        try:
            caller = sb.oauth.authenticate(_authorization(scope))
        except ApiError as exc:
            await send_json(send, exc.status, json.dumps(exc.body(cid)).encode(), [])
            return
        private = caller.kind == "private_app"
        rejection, headers = sb.limits.admit(caller.app_key, private, search=info.kind == "search")
        if rejection is not None:
            await self._too_many(send, rejection, headers, cid)
            return
        sb.counters.record_admitted(info)
        await self.app(scope, receive, with_headers(send, headers))

    async def _too_many(self, send: Send, rejection: Rejection, headers: Headers, cid: str) -> None:
        self.sb.counters.record_rate_limited(rejection.policy)
        extra = list(headers)
        if rejection.retry_after is not None:
            extra.append((b"Retry-After", str(rejection.retry_after).encode()))
        await send_json(send, 429, rate_limit_body(rejection.message, rejection.policy, cid), extra)

    async def _fault(self, fault: Fault, send: _Counted, cid: str, scope: Scope) -> bool:
        """Play a fault; True when it answered (or dropped) the request, False for ``slow``."""
        send.faulted = True
        private = _authorization(scope).partition(" ")[2].strip() == self.sb.config.token
        headers = self.sb.limits.peek("private_app" if private else "oauth", private)
        if fault.kind == "rate_limit":
            headers = [(k, b"0" if k == b"X-HubSpot-RateLimit-Remaining" else v) for k, v in headers]
            retry = None if fault.retry_after is None else _seconds(fault.retry_after)
            self.sb.counters.record_rate_limited(BURST)
            extra = [] if retry is None else [(b"Retry-After", retry.encode())]
            body = rate_limit_body("You have reached your ten_secondly_rolling limit.", BURST, cid)
            await send_json(send, 429, body, headers + extra)
            return True
        if fault.kind == "error":
            phrase, category = _phrase(fault.status), _FAULT_CATEGORIES.get(fault.status, "INTERNAL_ERROR")
            await send_json(
                send, fault.status, json.dumps(error_body(phrase, category, cid)).encode(), headers
            )
            return True
        status = await apply_fault(fault, send, headers)
        if status == -1:
            return False
        send.finish(status)
        return True


def _authorization(scope: Scope) -> str:
    for key, value in scope.get("headers") or []:
        if key == b"authorization":
            return str(value.decode("latin-1"))
    return ""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)

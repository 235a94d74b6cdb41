"""`RingCentralSandbox`: one simulated RingCentral account, its HTTP app and its test-side controls.

Serves the platform and the media host from one loopback server (`contentUri` points back at
it). In front of every API call, in order (`Pipeline`): a request id (`RCRequestId`), switchable
faults, the usage-plan group's window and penalty, the bearer check; then the handler, with the
group's `X-Rate-Limit-*` headers on its answer. Tests use the Python accessors; other processes
use `/_sandbox` (see `control`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_mcp.sandbox.asgi import buffered
from crm_mcp.sandbox.faults import FaultInjector, apply_fault

from .api import CallLogApi
from .calls import SimCall, SimRecording, generate
from .config import SANDBOX_MAIN_NUMBER, RingCentralSandboxConfig
from .control import control_routes
from .limits import GroupWindows
from .oauth import OAuthRefused, SandboxOAuth, api_error

TOKEN_PATH = "/restapi/oauth/token"  # noqa: S105 - a URL path


def group_of(path: str) -> str:
    """The OAS's x-throttling-group of what the simulator serves."""
    if path == TOKEN_PATH:
        return "auth"
    if "/extension/" in path:
        return "light"
    return "heavy"


class RingCentralSandbox:
    def __init__(self, config: RingCentralSandboxConfig | None = None) -> None:
        self.config = config or RingCentralSandboxConfig()
        self.lock = threading.RLock()
        self.faults = FaultInjector(seed=self.config.seed)
        self.counters: Counter[str] = Counter()
        self.windows = GroupWindows(self.config)
        self.oauth = SandboxOAuth(self.config)
        self.main_number = SANDBOX_MAIN_NUMBER
        self.calls: list[SimCall] = []
        self._pending = 0
        self._recordings: dict[str, SimRecording] = {}
        self.seed_calls(self.config.calls, self.config.days)
        self.api = CallLogApi(self)
        self.app = Starlette(
            routes=[
                *control_routes(self),
                Route(TOKEN_PATH, self._token, methods=["POST"]),
                *self.api.routes(),
            ],
            middleware=[Middleware(Pipeline, sandbox=self)],
            exception_handlers={OAuthRefused: self._refused},
        )

    # -- state ------------------------------------------------------------------------------
    def seed_calls(self, calls: int, days: int, pending: int | None = None) -> dict[str, Any]:
        """Replace the call history with `calls` generated calls over the `days` before now."""
        with self.lock:
            self._pending = self.config.pending_recordings if pending is None else max(0, pending)
            self.calls = generate(calls, max(1, days), self.config.seed, self.config.clock(), self._pending)
            self._recordings = {c.recording.id: c.recording for c in self.calls if c.recording}
        return self.describe()

    def describe(self) -> dict[str, Any]:
        with self.lock:
            kinds = Counter(c.kind for c in self.calls)
            recs = list(self._recordings.values())
            return {
                "calls": len(self.calls),
                "records": sum(len(c.legs) for c in self.calls),
                "kinds": dict(sorted(kinds.items())),
                "callers": len({c.external for c in self.calls}),
                "recordings": len(recs),
                "recordings_pending": sum(1 for r in recs if r.pending),
                "first": min((c.start for c in self.calls), default=None),
                "last": max((c.start for c in self.calls), default=None),
            }

    def calls_now(self) -> list[SimCall]:
        with self.lock:
            now = self.config.clock()
            return [c for c in self.calls if c.start <= now]

    def recording(self, recording_id: str, *, ready: bool = False) -> SimRecording:
        """Raises: OAuthRefused 404 CMN-102 when there is none (or, with `ready`, not yet)."""
        with self.lock:
            rec = self._recordings.get(recording_id)
        if rec is None or (ready and rec.pending):
            raise api_error(404, "CMN-102", "Resource for parameter [recordingId] is not found")
        return rec

    def release_recordings(self) -> int:
        """Every processing recording becomes ready; how many did."""
        with self.lock:
            pending = [r for r in self._recordings.values() if r.pending]
            for rec in pending:
                rec.pending = False
        return len(pending)

    def set_limits(self, **groups: int | None) -> dict[str, int]:
        """Per-group limits (light, medium, heavy, auth); `all=` sets every group."""
        with self.lock:
            every = groups.pop("all", None)
            for name in self.config.group_limits:
                value = groups.get(name, every)
                if value is not None:
                    self.config.group_limits[name] = int(value)
            return dict(self.config.group_limits)

    def reset(self) -> None:
        """Forget faults, stats, windows, penalties and tokens; the call history stays (its
        processing recordings processing again)."""
        self.faults.clear()
        self.counters.clear()
        self.windows.reset()
        self.oauth.reset()
        with self.lock:
            recordings = [c.recording for c in self.calls if c.recording is not None]
            newest = recordings[len(recordings) - self._pending :] if self._pending else []
            for rec in recordings:
                rec.pending = rec in newest

    @property
    def stats(self) -> dict[str, Any]:
        return {
            **dict(self.counters),
            "grants": dict(self.oauth.grants),
            "rate_limited": self.windows.rejected,
            "sent_during_penalty": self.windows.in_penalty,
        }

    def base(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    # -- endpoints --------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        body = self.oauth.grant(request.headers.get("authorization", ""), await request.body())
        return JSONResponse(body)

    async def _refused(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OAuthRefused)
        return JSONResponse(exc.body, status_code=exc.status)


class Pipeline:
    """Outer ASGI layer: request id, faults, group windows and penalty, bearer check."""

    def __init__(self, app: ASGIApp, sandbox: RingCentralSandbox) -> None:
        self.app = app
        self.sb = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        try:
            await self._serve(scope, receive, send)
        except asyncio.CancelledError:
            return  # shutdown while a slow/timeout fault sleeps

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        sb, path = self.sb, scope["path"]
        rid = [(b"RCRequestId", str(uuid.uuid4()).encode())]
        group = group_of(path)
        receive = await buffered(receive)
        sb.counters[f"{scope['method']} {group}"] += 1
        fault = sb.faults.take(path)
        if fault is not None:
            headers = rid + sb.windows.peek(group)
            if fault.kind == "rate_limit":  # one 429, as the fault says: no penalty window behind it
                extra = [] if fault.retry_after is None else [(b"Retry-After", _secs(fault.retry_after))]
                await _json(send, 429, _rate_body(), headers + extra)
                return
            if fault.kind == "error":
                body = {"errorCode": "CMN-201", "message": "Service Temporary Unavailable"}
                await _json(send, fault.status, body, headers)
                return
            if await apply_fault(fault, send, headers) != -1:
                return
        verdict = sb.windows.admit(group)
        if not verdict.allowed:
            extra = (
                [] if verdict.retry_after is None else [(b"Retry-After", str(verdict.retry_after).encode())]
            )
            await _json(send, 429, _rate_body(), rid + verdict.headers + extra)
            return
        if path != TOKEN_PATH:
            try:
                sb.oauth.authenticate(_header(scope, b"authorization"))
            except OAuthRefused as exc:
                await _json(send, exc.status, exc.body, rid + verdict.headers)
                return
        extra_headers = rid + verdict.headers

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra_headers]}
            await send(message)

        await self.app(scope, receive, send_with)


def _rate_body() -> dict[str, Any]:
    message = "Request rate exceeded"
    return {
        "errorCode": "CMN-301",
        "message": message,
        "errors": [{"errorCode": "CMN-301", "message": message}],
    }


def _secs(value: float) -> bytes:
    return (str(int(value)) if float(value).is_integer() else str(value)).encode()


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


async def _json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json;charset=UTF-8"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + headers})
    await send({"type": "http.response.body", "body": raw})

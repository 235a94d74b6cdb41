"""Per-principal limits on the HTTP transport: tool-call rate, webhook rate, open sessions.

- Tool calls: each principal (the access token's `client_id`; `local` without a token) has a
  token bucket of CRM_MCP_RATE_LIMIT_BURST calls refilled at CRM_MCP_RATE_LIMIT_PER_MINUTE.
  A POST to /mcp carrying a `tools/call` beyond it is answered **HTTP 429 with `Retry-After`**
  and, as the body, a JSON-RPC error for that request (code -32029, `data.retry_after` in
  seconds): a plain HTTP client sees the status and the header, and the MCP SDK's client turns
  the body into the error of the call that was refused, so an agent reads "retry after N s".
  Other methods (initialize, lists, reads) are not counted.
- Webhooks: a bucket per (connection in the path, source IP) with
  CRM_MCP_WEBHOOK_RATE_LIMIT_PER_MINUTE / _BURST; beyond it, 429 with `Retry-After` (senders
  such as GoHighLevel and HubSpot redeliver later).
- Sessions: at most CRM_MCP_MAX_SESSIONS open MCP sessions (the SDK's own cap); a request that
  would open one more is answered 503, to which this adds `Retry-After`.

The buckets live in this process (several server processes each allow the rate). The middleware
sits inside the SDK's authentication middleware, so it knows the principal; requests that fail
authentication are left to be refused (401) without being counted. Clocks are injected.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.middleware import Middleware

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from crm_mcp.settings import Settings

RATE_LIMITED = -32029  # JSON-RPC server-error range: "rate limited", with data.retry_after
SESSIONS_RETRY_AFTER_S = 60
MAX_KEYS = 10_000  # buckets kept per limiter; full (idle) ones are dropped first


class TokenBuckets:
    """A token bucket per key: `burst` tokens, refilled at `per_minute` per minute."""

    def __init__(self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[Any, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: Any, n: int = 1) -> float | None:
        """Take `n` tokens for `key`: None when granted, else the seconds until they would be."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= n:
            self._buckets[key] = (tokens - n, now)
            self._prune(now)
            return None
        self._buckets[key] = (tokens, now)
        return (n - tokens) / self.rate if self.rate > 0 else math.inf

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= MAX_KEYS:
            return
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for key in full or list(self._buckets)[: len(self._buckets) - MAX_KEYS]:
            del self._buckets[key]


def principal_key(scope: Scope) -> str:
    """The principal a request speaks for, as the bucket key (`local` without a token)."""
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        return user.access_token.client_id or "default"
    return "local"


def tool_calls_in(body: bytes) -> list[Any]:
    """The JSON-RPC ids of the `tools/call` requests in a POST body (one message or a batch)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    messages = data if isinstance(data, list) else [data]
    return [m.get("id") for m in messages if isinstance(m, dict) and m.get("method") == "tools/call"]


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(min(seconds, 86_400))))


async def _send_json(send: Send, status: int, body: Any, retry_after: str) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"retry-after", retry_after.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestLimits:
    """ASGI middleware applying the tool-call and webhook rates, and Retry-After on a full server."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tools: TokenBuckets | None,
        webhooks: TokenBuckets | None,
        auth_required: bool,
        max_body: int,
        mcp_path: str = "/mcp",
    ) -> None:
        self.app = app
        self.tools, self.webhooks = tools, webhooks
        self.auth_required = auth_required
        self.max_body = max_body
        self.mcp_path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith("/webhooks/") and self.webhooks is not None:
            segments = path.split("/")
            client = scope.get("client") or ("?", 0)
            wait = self.webhooks.take(("/".join(segments[2:4])[:256], client[0]))
            if wait is not None:
                error = {"error": "too many webhook deliveries; retry later"}
                await _send_json(send, 429, error, _retry_after(wait))
                return
        elif path.rstrip("/") == self.mcp_path and scope.get("method") == "POST":
            await self._mcp_post(scope, receive, _with_retry_after(send))
            return
        await self.app(scope, receive, send)

    async def _mcp_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        authenticated = isinstance(scope.get("user"), AuthenticatedUser)
        if self.tools is None or (self.auth_required and not authenticated):
            await self.app(scope, receive, send)  # unauthenticated: refused (401), not counted
            return
        body, replay = await _buffer(receive, self.max_body)
        ids = tool_calls_in(body) if body is not None else []
        if ids and (wait := self.tools.take(principal_key(scope), len(ids))) is not None:
            seconds = _retry_after(wait)
            errors = [
                {
                    "jsonrpc": "2.0",
                    "id": rid,
                    "error": {
                        "code": RATE_LIMITED,
                        "message": f"Rate limit exceeded for this access token: retry after {seconds} s.",
                        "data": {"retry_after": int(seconds)},
                    },
                }
                for rid in ids
            ]
            await _send_json(send, 429, errors[0] if len(errors) == 1 else errors, seconds)
            return
        await self.app(scope, replay, send)


async def _buffer(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """Read the request body (at most `limit` bytes; beyond, None) and a `receive` that replays it
    (then the rest of the stream, so the SDK still answers an oversized body with 413)."""
    read: list[Message] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit or not message.get("more_body", False):
            break
    complete = size <= limit and read[-1]["type"] == "http.request" and not read[-1].get("more_body")
    body = b"".join(m.get("body", b"") for m in read if m["type"] == "http.request")

    async def replay() -> Message:
        return read.pop(0) if read else await receive()

    return (body if complete else None), replay


def _with_retry_after(send: Send) -> Send:
    """`send` adding Retry-After to a 503 (the SDK's answer when every session slot is taken)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            headers = [h for h in message.get("headers", []) if h[0].lower() != b"retry-after"]
            message = {
                **message,
                "headers": [*headers, (b"retry-after", str(SESSIONS_RETRY_AFTER_S).encode())],
            }
        await send(message)

    return sending


def install(app: Starlette, settings: Settings, *, auth_required: bool, max_body: int) -> Starlette:
    """Add `RequestLimits` to `app` inside its authentication middleware (before the first request)."""
    s = settings
    tools = TokenBuckets(s.rate_limit_per_minute, s.rate_limit_burst) if s.rate_limit_per_minute else None
    hooks = (
        TokenBuckets(s.webhook_rate_limit_per_minute, s.webhook_rate_limit_burst)
        if s.webhook_rate_limit_per_minute
        else None
    )
    app.user_middleware.append(
        Middleware(RequestLimits, tools=tools, webhooks=hooks, auth_required=auth_required, max_body=max_body)
    )
    return app

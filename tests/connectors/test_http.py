"""ResilientClient with an in-memory transport and virtual time: retries, safety, errors, redaction."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from crm_mcp.connectors.auth import StaticTokenAuth
from crm_mcp.connectors.breaker import CircuitBreaker
from crm_mcp.connectors.http import ResilientClient, check_base_url
from crm_mcp.errors import (
    AuthError,
    CircuitOpenError,
    ConfigurationError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from crm_mcp.providers.gohighlevel.connector import GHL_SPEC

TOKEN = "pit-canary-7f3c9e2b-aaaa-bbbb-cccc-1234567890ab"
Handler = Callable[[httpx2.Request], httpx2.Response]


class Script:
    """Answers requests from a list of (status, body, headers) or exceptions; records what came in."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        status, body, headers = (*step, {})[:3] if isinstance(step, tuple) else (step, {}, {})
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx2.Response(status, content=content, headers=headers)


def client(t: Any, script: Script, **kw: Any) -> ResilientClient:
    return ResilientClient(
        GHL_SPEC,
        "test",
        base_url="https://services.leadconnectorhq.com",
        auth=StaticTokenAuth(TOKEN),
        transport=httpx2.MockTransport(script),
        clock=t.clock,
        sleep=t.sleep,
        rng=random.Random(7),
        **kw,
    )


@pytest.mark.anyio
async def test_get_retries_5xx_then_succeeds(fake_time: Any) -> None:
    script = Script((503, {}), (502, {}), (200, {"ok": True}))
    c = client(fake_time, script)
    assert (await c.request_json("GET", "/x")) == {"ok": True}
    assert len(script.requests) == 3
    assert script.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert script.requests[0].headers["Version"] == "2021-07-28"
    assert len(fake_time.sleeps) == 2 and all(0 <= s <= 8 for s in fake_time.sleeps)


@pytest.mark.anyio
async def test_plain_post_is_not_retried_on_5xx(fake_time: Any) -> None:
    script = Script((503, {"message": "down"}))
    c = client(fake_time, script)
    with pytest.raises(UpstreamUnavailableError) as info:
        await c.request("POST", "/contacts/x/notes", json={"body": "hi"})
    assert len(script.requests) == 1
    assert info.value.status == 503 and info.value.retryable


@pytest.mark.anyio
async def test_post_marked_idempotent_is_retried(fake_time: Any) -> None:
    script = Script((500, {}), (200, {"new": False}))
    c = client(fake_time, script)
    await c.request("POST", "/contacts/upsert", json={}, idempotent=True)
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_post_read_timeout_is_not_retried_but_connect_error_is(fake_time: Any) -> None:
    script = Script(httpx2.ReadTimeout("slow"))
    with pytest.raises(UpstreamUnavailableError, match="timed out"):
        await client(fake_time, script).request("POST", "/x", json={})
    assert len(script.requests) == 1
    script = Script(httpx2.ConnectError("refused"), (201, {"id": "1"}))
    await client(fake_time, script).request("POST", "/x", json={})
    assert len(script.requests) == 2


@pytest.mark.anyio
async def test_429_retry_after_is_honoured(fake_time: Any) -> None:
    script = Script((429, {"message": "slow down"}, {"Retry-After": "3"}), (200, {}))
    c = client(fake_time, script)
    start = fake_time.now
    await c.request("POST", "/notes", json={})  # a 429 was refused before processing: safe to resend
    assert len(script.requests) == 2
    assert fake_time.now - start >= 3.0


@pytest.mark.anyio
async def test_429_persisting_raises_rate_limited_with_retry_after(fake_time: Any) -> None:
    script = Script((429, {}, {"Retry-After": "2"}))
    c = client(fake_time, script, max_attempts=2)
    with pytest.raises(RateLimitedError) as info:
        await c.request("GET", "/x")
    assert info.value.retry_after == 2.0 and info.value.status == 429


@pytest.mark.anyio
async def test_retry_budget_bounds_total_time(fake_time: Any) -> None:
    script = Script((503, {}, {"Retry-After": "20"}))
    c = client(fake_time, script, max_retry_time_s=30)
    with pytest.raises(UpstreamUnavailableError):
        await c.request("GET", "/x")
    assert len(script.requests) == 2  # the second 20 s wait would overrun the 30 s budget


@pytest.mark.anyio
async def test_error_mapping_and_trace_id(fake_time: Any) -> None:
    body422 = {"statusCode": 422, "message": ["email must be an email", "phone bad"], "traceId": "tr-1"}
    cases: list[tuple[int, dict[str, Any], type[Exception]]] = [
        (400, {"statusCode": 400, "message": "Bad Request"}, InvalidRequestError),
        (422, body422, InvalidRequestError),
        (401, {"statusCode": 401, "message": "Invalid token"}, AuthError),
        (403, {"message": "Forbidden"}, AuthError),
        (404, {"message": "Contact not found"}, NotFoundError),
    ]
    for status, body, kind in cases:
        script = Script((status, body))
        with pytest.raises(kind) as info:
            await client(fake_time, script).request("GET", "/contacts/abc")
        assert len(script.requests) == 1
        assert info.value.status == status  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError) as info422:
        await client(fake_time, Script((422, body422))).request("PUT", "/contacts/abc", json={})
    assert "email must be an email; phone bad" in str(info422.value)
    assert info422.value.request_id == "tr-1"
    assert info422.value.provider == "gohighlevel"


@pytest.mark.anyio
async def test_delete_with_json_body(fake_time: Any) -> None:
    script = Script((200, {"tags": []}))
    await client(fake_time, script).request("DELETE", "/contacts/c/tags", json={"tags": ["a"]})
    assert json.loads(script.requests[0].content) == {"tags": ["a"]}


@pytest.mark.anyio
async def test_malformed_json_is_upstream_unavailable(fake_time: Any) -> None:
    c = client(fake_time, Script((200, b"{not json")))
    with pytest.raises(UpstreamUnavailableError, match="not valid JSON"):
        await c.request_json("GET", "/x")


@pytest.mark.anyio
async def test_breaker_opens_on_5xx_burst_and_then_refuses_without_sending(fake_time: Any) -> None:
    script = Script((503, {}))
    c = client(fake_time, script, max_attempts=1)
    for _ in range(5):
        with pytest.raises(UpstreamUnavailableError):
            await c.request("GET", "/x")
    with pytest.raises(CircuitOpenError) as info:
        await c.request("GET", "/x")
    assert len(script.requests) == 5
    assert info.value.retry_after == pytest.approx(5.0)
    assert c.snapshot()["breaker"]["state"] == "open"


@pytest.mark.anyio
async def test_4xx_do_not_open_the_breaker(fake_time: Any) -> None:
    script = Script((404, {}))
    c = client(fake_time, script)
    for _ in range(10):
        with pytest.raises(NotFoundError):
            await c.request("GET", "/x")
    assert c.breaker.snapshot()["state"] == "closed"


@pytest.mark.anyio
async def test_half_open_probe_success_closes(fake_time: Any) -> None:
    script = Script(*([(503, {})] * 5), (200, {}))
    br = CircuitBreaker("t", clock=fake_time.clock)
    c = client(fake_time, script, max_attempts=1, breaker=br)
    for _ in range(5):
        with pytest.raises(UpstreamUnavailableError):
            await c.request("GET", "/x")
    fake_time.advance(5)
    await c.request("GET", "/x")
    assert br.snapshot()["state"] == "closed"


@pytest.mark.anyio
async def test_limiter_learns_from_response_headers(fake_time: Any) -> None:
    headers = {"X-RateLimit-Max": "20", "X-RateLimit-Interval-Milliseconds": "2000",
               "X-RateLimit-Remaining": "19", "X-RateLimit-Daily-Remaining": "150"}  # fmt: skip
    c = client(fake_time, Script((200, {}, headers)))
    await c.request("GET", "/x")
    snap = c.snapshot()["limiter"]
    assert (snap["limit"], snap["interval_s"], snap["daily_remaining"]) == (20, 2.0, 150)


@pytest.mark.anyio
async def test_token_never_appears_in_errors(fake_time: Any) -> None:
    body = {"message": f"Invalid token: Bearer {TOKEN} rejected", "token": TOKEN}
    with pytest.raises(AuthError) as info:
        await client(fake_time, Script((401, body))).request("GET", f"/x?access_token={TOKEN}")
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.args)
    with pytest.raises(UpstreamUnavailableError) as info2:
        await client(fake_time, Script(httpx2.ReadError(f"boom {TOKEN}"))).request("GET", "/x")
    assert TOKEN not in str(info2.value)
    assert TOKEN not in repr(StaticTokenAuth(TOKEN))


def test_base_url_rules() -> None:
    assert check_base_url("https://services.leadconnectorhq.com/") == "https://services.leadconnectorhq.com"
    assert check_base_url("http://127.0.0.1:8123") == "http://127.0.0.1:8123"
    with pytest.raises(ConfigurationError):
        check_base_url("http://example.com")


def test_empty_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        StaticTokenAuth("  ")

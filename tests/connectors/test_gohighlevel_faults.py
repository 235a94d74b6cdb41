"""Resilience against the GHL simulator's faults over loopback: 429s, 5xx bursts, timeouts, resets,
malformed bodies, POST safety, rate-limit pacing and redaction."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest

from crm_mcp.connectors.base import Appointment, Contact, Note, Task
from crm_mcp.errors import AuthError, CircuitOpenError, UpstreamUnavailableError
from crm_mcp.providers.gohighlevel.connector import GoHighLevelConnector
from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.sandbox.runner import SandboxServer


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.fixture(scope="module")
def ghl() -> Iterator[tuple[GHLSandbox, SandboxServer]]:
    sandbox, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=20, burst_interval_ms=2000))
    yield sandbox, server
    server.stop()


@pytest.fixture
def sandbox(ghl: tuple[GHLSandbox, SandboxServer]) -> GHLSandbox:
    sb = ghl[0]
    sb.reset()
    sb.set_limits(burst_max=20, burst_interval_ms=2000, daily_limit=200_000)
    return sb


@pytest.fixture
async def make(ghl: tuple[GHLSandbox, SandboxServer], sandbox: GHLSandbox) -> AsyncIterator[Any]:
    made: list[GoHighLevelConnector] = []

    def factory(**kw: Any) -> GoHighLevelConnector:
        kw.setdefault("token", SANDBOX_TOKEN)
        kw.setdefault("rng", NoJitter())
        c = GoHighLevelConnector("faults", location_id=SANDBOX_LOCATION_ID, base_url=ghl[1].url, **kw)
        made.append(c)
        return c

    yield factory
    for c in made:
        await c.aclose()


@pytest.fixture
async def conn(make: Any) -> AsyncIterator[GoHighLevelConnector]:
    c = make()
    yield c
    await c.aclose()


async def contact_id(conn: GoHighLevelConnector, email: str = "f@example.com") -> str:
    c, _ = await conn.upsert_contact(Contact(email=email))
    assert c.id
    return c.id


def route_count(sb: GHLSandbox, route: str) -> int:
    return int(sb.stats["by_route"].get(route, 0))


@pytest.mark.anyio
async def test_429_with_retry_after_is_waited_out(conn: GoHighLevelConnector, sandbox: GHLSandbox) -> None:
    cid = await contact_id(conn)
    sandbox.faults.set("rate_limit", retry_after=0.3, count=1)
    start = time.monotonic()
    got = await conn.get_contact(cid)
    assert got.id == cid and time.monotonic() - start >= 0.3
    assert sandbox.stats["by_status"]["429"] == 1


@pytest.mark.anyio
async def test_429_without_retry_after_pauses_one_window(
    conn: GoHighLevelConnector, sandbox: GHLSandbox
) -> None:
    sandbox.set_limits(burst_interval_ms=400)
    cid = await contact_id(conn)  # learns the 400 ms window from the headers
    sandbox.faults.set("rate_limit", count=1)
    start = time.monotonic()
    await conn.get_contact(cid)
    assert time.monotonic() - start >= 0.35


@pytest.mark.anyio
async def test_post_is_resent_after_429_because_it_was_refused(
    conn: GoHighLevelConnector, sandbox: GHLSandbox
) -> None:
    cid = await contact_id(conn)
    sandbox.faults.set("rate_limit", retry_after=0.1, count=1, path="/notes")
    note = await conn.add_note(Note(contact_id=cid, body="once"))
    assert note.id and len(sandbox.snapshot()["notes"]) == 1


@pytest.mark.anyio
async def test_5xx_burst_is_retried_for_reads(conn: GoHighLevelConnector, sandbox: GHLSandbox) -> None:
    cid = await contact_id(conn)
    sandbox.faults.set("error", status=503, count=3)
    assert (await conn.get_contact(cid)).id == cid
    assert sandbox.stats["by_status"]["503"] == 3


@pytest.mark.anyio
async def test_5xx_burst_opens_the_breaker(make: Any, sandbox: GHLSandbox) -> None:
    conn = make(max_attempts=1)
    sandbox.faults.set("error", status=503)  # until cleared
    for _ in range(5):
        with pytest.raises(UpstreamUnavailableError) as info:
            await conn.ping()
        assert info.value.status == 503
    before = sandbox.stats["total"]
    with pytest.raises(CircuitOpenError) as open_err:
        await conn.ping()
    assert sandbox.stats["total"] == before  # refused locally, nothing sent
    assert open_err.value.retry_after and open_err.value.retry_after > 0
    assert conn.snapshot()["breaker"]["state"] == "open"


@pytest.mark.anyio
async def test_post_not_retried_blindly_on_5xx(conn: GoHighLevelConnector, sandbox: GHLSandbox) -> None:
    cid = await contact_id(conn)
    sandbox.faults.set("error", status=503, count=1, path="/calendars/events/appointments")
    slot = "2030-01-07T10:00:00-05:00"
    appt = Appointment(
        calendar_id=SANDBOX_CALENDAR_ID, contact_id=cid, start_time=datetime.fromisoformat(slot)
    )
    with pytest.raises(UpstreamUnavailableError):
        await conn.create_appointment(appt)
    assert route_count(sandbox, "POST /calendars/events/appointments") == 1
    assert sandbox.snapshot()["appointments"] == []


@pytest.mark.anyio
async def test_timeout_retried_for_get_not_for_post(make: Any, sandbox: GHLSandbox) -> None:
    conn = make(timeout_s=0.2)
    cid = await contact_id(conn)
    sandbox.faults.set("timeout", delay_s=0.5, count=1)
    assert (await conn.get_contact(cid)).id == cid
    sandbox.faults.set("timeout", delay_s=0.5, count=1)
    with pytest.raises(UpstreamUnavailableError, match="timed out"):
        await conn.add_note(Note(contact_id=cid, body="maybe"))
    assert sandbox.snapshot()["notes"] == []  # a blind retry would have created the note


@pytest.mark.anyio
async def test_connection_reset(conn: GoHighLevelConnector, sandbox: GHLSandbox) -> None:
    cid = await contact_id(conn)
    sandbox.faults.set("reset", count=1)
    assert (await conn.get_contact(cid)).id == cid  # GET: retried
    sandbox.faults.set("reset", count=1)
    with pytest.raises(UpstreamUnavailableError):
        await conn.create_task(Task(contact_id=cid, title="t", due_date="2030-01-01T00:00:00Z"))  # type: ignore[arg-type]
    assert sandbox.snapshot()["tasks"] == []


@pytest.mark.anyio
async def test_slow_response_within_timeout_is_fine(conn: GoHighLevelConnector, sandbox: GHLSandbox) -> None:
    sandbox.faults.set("slow", delay_s=0.2, count=1)
    await conn.ping()


@pytest.mark.anyio
async def test_malformed_body(conn: GoHighLevelConnector, sandbox: GHLSandbox) -> None:
    cid = await contact_id(conn)
    sandbox.faults.set("malformed", count=1)
    with pytest.raises(UpstreamUnavailableError, match="not valid JSON"):
        await conn.get_contact(cid)
    assert (await conn.get_contact(cid)).id == cid


@pytest.mark.anyio
async def test_concurrent_burst_is_paced_without_429s(
    conn: GoHighLevelConnector, sandbox: GHLSandbox
) -> None:
    """45 concurrent reads against a 20 / 2 s window: the limiter spreads them; nothing is refused."""
    sandbox.set_limits(burst_interval_ms=1000)
    await conn.ping()  # learn the limits
    start = time.monotonic()
    await asyncio.gather(*(conn.ping() for _ in range(45)))
    elapsed = time.monotonic() - start
    assert sandbox.stats["rate_limited"] == 0
    assert sandbox.stats["by_status"]["200"] == 46
    assert 1.5 < elapsed < 6


@pytest.mark.anyio
async def test_cold_start_burst_recovers_from_429s(conn: GoHighLevelConnector, sandbox: GHLSandbox) -> None:
    """Before the first response the limiter assumes GHL's 100/10 s; the sandbox says 20/1 s.
    Refused requests are waited out and re-sent, so every call still succeeds."""
    sandbox.set_limits(burst_interval_ms=500)
    await asyncio.gather(*(conn.ping() for _ in range(30)))
    assert sandbox.stats["by_status"].get("200") == 30


@pytest.mark.anyio
async def test_token_never_in_errors_or_logs(
    make: Any, sandbox: GHLSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "pit-canary-0c4f5a1e-9b7d-4e2a-8f31-d2b6c7a9e0f4"
    caplog.set_level(logging.DEBUG, logger="crm_mcp")
    conn = make(token=canary)
    with pytest.raises(AuthError) as info:
        await conn.ping()
    assert info.value.status == 401 and not info.value.retryable
    assert canary not in str(info.value) and canary not in repr(info.value)
    good = make()
    sandbox.faults.set("error", status=503, count=1)
    await good.ping()
    assert canary not in caplog.text and SANDBOX_TOKEN not in caplog.text
    assert "retry" in caplog.text  # the 503 was logged, redacted

"""The call-log conformance cases: every registered provider with the `call_logs` capability
(a phone system) and a simulator, held to the same cases over real loopback HTTP.

Like test_conformance.py it names no provider. Besides the `SandboxHandle` protocol, a call-log
simulator's handle answers `session_results()` (every call it holds, by session id, with the
outcome the caller lived: answered / voicemail / missed) and `release_recordings()` (recordings
still processing become ready); a call-log connector takes a `page_size` option, so paging is
really exercised. The simulators keep wall time and the connectors virtual time here, so the
429 cases check the wait; that nothing is sent during a penalty is checked per provider, on one
clock (tests/providers/<name>/).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_mcp.connectors.base import CallLogs, CallSession, Connector, require
from crm_mcp.connectors.provider import Provider
from crm_mcp.connectors.registry import providers
from crm_mcp.errors import InvalidRequestError, RetryableError, UpstreamUnavailableError
from tests.providers.support import FakeTime, running_sandbox

pytestmark = pytest.mark.anyio

TELEPHONY = [p for p in providers() if p.connector and p.sandbox and "call_logs" in p.capabilities]


@pytest.fixture(scope="module", params=TELEPHONY, ids=lambda p: p.name)
def running(request: pytest.FixtureRequest) -> Iterator[tuple[Provider, Any]]:
    yield from running_sandbox(request.param)


@pytest.fixture
def sandbox(running: tuple[Provider, Any]) -> Any:
    handle = running[1]
    handle.reset()
    return handle


@pytest.fixture
def fake() -> FakeTime:
    """The connectors' monotonic clock; `sleep` moves it instead of waiting."""
    return FakeTime(yields=True)


@pytest.fixture
async def make(running: tuple[Provider, Any], sandbox: Any, fake: FakeTime) -> AsyncIterator[Any]:
    provider = running[0]
    made: list[Connector] = []

    def factory(**overrides: Any) -> CallLogs:
        assert provider.connector is not None
        opts = {**sandbox.connection_options(), "clock": fake.clock, "sleep": fake.sleep,
                "rng": random.Random(7), **overrides}  # fmt: skip
        conn = provider.connector("conformance", opts)
        made.append(conn)
        return require(conn, CallLogs)

    yield factory
    for conn in made:
        await conn.aclose()


async def every_call(conn: CallLogs, limit_pages: int = 500) -> tuple[list[CallSession], list[str]]:
    now = datetime.now(UTC)
    calls: list[CallSession] = []
    cursors: list[str] = []
    cursor: str | None = None
    for _ in range(limit_pages):
        page = await conn.list_calls(now - timedelta(days=8), now + timedelta(minutes=1), cursor)
        calls += page.calls
        cursor = page.next_cursor
        if cursor is None:
            return calls, cursors
        assert cursor not in cursors, "a cursor came back"
        cursors.append(cursor)
    raise AssertionError("paging did not end")


async def test_paging_gives_every_session_exactly_once(make: Any, sandbox: Any) -> None:
    calls, cursors = await every_call(make(page_size=7))
    ids = [c.id for c in calls]
    assert len(cursors) >= 3  # really paged
    assert len(ids) == len(set(ids)), "a session came twice"
    assert set(ids) == set(sandbox.session_results()), "a session was skipped"


async def test_one_session_per_call_with_the_outcome_of_the_call(make: Any, sandbox: Any) -> None:
    calls, _ = await every_call(make(page_size=5))
    expected = sandbox.session_results()
    assert {c.id: c.result for c in calls} == expected
    assert {"answered", "missed", "voicemail"} <= set(expected.values())
    numbers = [n for c in calls for n in (c.from_number, c.to_number) if n]
    assert numbers and all(n.startswith("+") and n[1:].isdigit() for n in numbers)  # E.164


async def test_recordings_download_with_a_size_cap_and_wait_until_ready(make: Any, sandbox: Any) -> None:
    conn = make()
    calls, _ = await every_call(conn)
    recordings = [c.recording for c in calls if c.recording is not None]
    ready = [r for r in recordings if r.ready]
    assert ready and any(not r.ready for r in recordings)
    content, content_type = await conn.download_recording(ready[0], 50_000_000)
    assert content and content_type.startswith("audio/")
    with pytest.raises(InvalidRequestError) as too_big:
        await conn.download_recording(ready[0], len(content) - 1)
    assert too_big.value.status == 413 and not too_big.value.retryable
    assert sandbox.release_recordings() >= 1
    calls, _ = await every_call(conn)
    assert all(c.recording.ready for c in calls if c.recording is not None)


async def signed_in(conn: CallLogs) -> CallLogs:
    """The connector with its credentials exchanged already: the faults below are the API's."""
    await conn.ping()
    return conn


async def test_a_429_without_retry_after_waits_out_the_penalty(
    make: Any, sandbox: Any, fake: FakeTime
) -> None:
    conn = await signed_in(make())
    sandbox.faults.set("rate_limit", count=1)
    calls, _ = await every_call(conn)
    assert calls and sandbox.faults.describe()["faults"] == []
    assert sum(fake.sleeps) >= 60  # the penalty window waited out, not a quick retry


async def test_a_429_with_retry_after_is_waited_out(make: Any, sandbox: Any, fake: FakeTime) -> None:
    conn = await signed_in(make())
    sandbox.faults.set("rate_limit", retry_after=3, count=1)
    calls, _ = await every_call(conn)
    assert calls and sum(fake.sleeps) >= 3


async def test_a_5xx_burst_is_retried(make: Any, sandbox: Any) -> None:
    conn = await signed_in(make())
    sandbox.faults.set("error", status=503, count=2)
    calls, _ = await every_call(conn)
    assert calls and sandbox.faults.describe()["faults"] == []


async def test_a_persistent_5xx_ends_as_a_retryable_error(make: Any, sandbox: Any) -> None:
    conn = await signed_in(make())
    sandbox.faults.set("error", status=503)
    with pytest.raises(UpstreamUnavailableError) as failed:
        await every_call(conn)
    assert isinstance(failed.value, RetryableError) and failed.value.status == 503


async def test_a_hung_request_times_out_and_is_retried(make: Any, sandbox: Any) -> None:
    conn = await signed_in(make(timeout_s=0.25))
    sandbox.faults.set("timeout", delay_s=2.0, count=1)
    calls, _ = await every_call(conn)
    assert calls and sandbox.faults.describe()["faults"] == []

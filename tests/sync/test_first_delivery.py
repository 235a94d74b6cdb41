"""A first delivery pays only its writes; the read-before-create guards run when an earlier attempt
may have reached the CRM: a retry after a timeout, a reclaimed lease, a retried dead letter.

Bookings go through `create_appointment` (an MCP client) and the real worker to the GoHighLevel
simulator, which counts every request by route.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import select

from crm_mcp.errors import (
    CircuitOpenError,
    InvalidRequestError,
    RateLimitedError,
    UpstreamUnavailableError,
)
from crm_mcp.state.models import SyncOperation
from crm_mcp.sync.context import may_have_written
from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email": "jane@example.com",
    "start_time": "2026-12-01T15:00:00",
    "allow_past": True,  # fixed dates, recorded even once they are past
    "timezone": "America/New_York",
    "title": "Property tour",
    "notes": "Two-bedroom",
}
WRITES = {
    "POST /contacts/upsert": 1,
    "POST /calendars/events/appointments": 1,
    "POST /contacts/{contactId}/notes": 1,
    "POST /contacts/{contactId}/tasks": 1,
}
GUARDS = (
    "GET /contacts/{contactId}/appointments",
    "GET /contacts/{contactId}/notes",
    "GET /contacts/{contactId}/tasks",
)


class Killed(BaseException):
    """The worker process dies here (SIGKILL): no except clause in the worker sees it."""


def routes(sim: Any) -> dict[str, int]:
    return dict(sim.stats["by_route"])


def guard_reads(sim: Any) -> dict[str, int]:
    return {route: n for route, n in routes(sim).items() if route in GUARDS}


def writes(sim: Any) -> dict[str, int]:
    return {route: n for route, n in routes(sim).items() if route.startswith(("POST", "PUT"))}


def each_effect_once(sim: Any) -> None:
    snap = sim.snapshot()
    assert [len(snap[kind]) for kind in ("contacts", "appointments", "notes", "tasks")] == [1, 1, 1, 1]


async def operation(h: Harness) -> SyncOperation:
    db = await h.runtime.database()
    async with db.sessions() as s:
        return (await s.execute(select(SyncOperation))).scalar_one()


def test_which_failures_may_have_written() -> None:
    assert not may_have_written(RateLimitedError("429: refused before processing"))
    assert not may_have_written(CircuitOpenError("breaker open: never sent"))
    assert not may_have_written(UpstreamUnavailableError("connection refused", sent=False))
    assert may_have_written(UpstreamUnavailableError("timed out"))  # the CRM may have processed it
    assert may_have_written(UpstreamUnavailableError("503", status=503))
    assert may_have_written(InvalidRequestError("422", status=422))
    assert may_have_written(AssertionError("our bug after the CRM answered"))


async def test_a_first_delivery_makes_only_the_four_writes(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        for i in range(3):
            await h.ok("create_appointment", {**BOOKING, "email": f"b{i}@example.com"})
        await h.settle()
        assert writes(sim) == {route: 3 for route in WRITES}
        assert guard_reads(sim) == {}
        # tags and custom fields ride on the upsert; the field list is read once per connection
        assert routes(sim).get("GET /locations/{locationId}/customFields") == 1
        assert sim.stats["total"] == 3 * 4 + 1


async def test_a_retry_after_a_timeout_reads_before_it_creates(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url), timeout_s=0.3) as h:
        await h.ok("create_appointment", BOOKING)
        # The note's POST is processed after our client gave up on it: an ambiguous failure.
        sim.faults.set("slow", delay_s=0.8, count=1, path=r"/notes$")
        await h.deliver()
        op = await operation(h)
        assert op.status == "pending" and "timed out" in (op.last_error or "")
        assert op.read_before_create is True
        deadline = time.monotonic() + 10
        while not sim.snapshot()["notes"]:  # the simulator applies the write once its delay is served
            assert time.monotonic() < deadline, "the slow note never landed"
            await asyncio.sleep(0.02)
        assert guard_reads(sim) == {}
        await h.settle()
        # The appointment was recorded with the failure; the note is found, not sent again.
        assert guard_reads(sim) == dict.fromkeys(GUARDS[1:], 1)
        assert writes(sim) == WRITES
        each_effect_once(sim)


async def test_a_reclaimed_lease_reads_before_it_creates(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        await h.ok("create_appointment", BOOKING)
        real = h.worker.handlers["appointment.create"]

        async def killed_before_the_commit(op: Any, ctx: Any) -> Any:
            await real(op, ctx)  # every step reached the CRM ...
            raise Killed  # ... and the process dies before the success is recorded

        h.worker.handlers["appointment.create"] = killed_before_the_commit
        with pytest.raises(Killed):
            await h.worker.run_until_idle()
        assert writes(sim) == WRITES and guard_reads(sim) == {}
        assert (await operation(h)).status == "in_flight"

        h.worker.handlers["appointment.create"] = real  # the next worker process
        h.clock.advance(h.runtime.settings.lease_seconds + 1)
        await h.settle()
        op = await operation(h)
        assert op.status == "succeeded" and op.attempts == 2 and op.result and op.result["reused_event"]
        assert guard_reads(sim) == dict.fromkeys(GUARDS, 1)
        assert writes(sim) == {**WRITES, "POST /contacts/upsert": 2}  # the upsert is safe to repeat
        each_effect_once(sim)


async def test_a_retried_dead_letter_reads_before_it_creates(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url, sync_deadline_seconds=30)) as h:
        await h.ok("create_appointment", BOOKING)
        # The appointment is refused with 429s until the operation runs out of time: refused
        # requests wrote nothing, so the flag is still clear when it dies ...
        sim.faults.set("rate_limit", retry_after=120, path=r"/calendars/events/appointments$")
        await h.deliver()
        op = await operation(h)
        assert op.status == "dead" and op.read_before_create is False
        assert guard_reads(sim) == {}
        sim.faults.clear()
        h.clock.advance(121)  # the connection's limiter honours the last Retry-After
        # ... and retry_failed_sync sets it anyway: whatever killed an operation, its next
        # attempt looks first.

        retried = await h.ok("retry_failed_sync", {"operation_id": op.id})
        assert retried["count"] == 1
        await h.settle()
        assert (await operation(h)).status == "succeeded"
        assert guard_reads(sim) == dict.fromkeys(GUARDS, 1)
        each_effect_once(sim)

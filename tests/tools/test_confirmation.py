"""Destructive and bulk actions ask the user first, through an in-process MCP client.

A client that declares elicitation is asked (accept goes ahead, decline changes nothing); a
client that cannot be asked gets nothing done and is told to call again with confirm=true.
Cancel (update_appointment_status action=cancel), validate_sync repair=true and a bulk
retry_failed_sync (no operation_id) are covered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitResult

from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import build_worker
from tests.harness import FakeClock, Harness
from tests.tools.test_appointments import BOOKING

pytestmark = pytest.mark.anyio


class User:
    """The person behind the client: answers every question the same way, and remembers them."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer  # "accept", "decline", or None: the client cannot ask at all
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(params.message)
        if self.answer == "accept":
            return ElicitResult(action="accept", content={"confirm": True})
        return ElicitResult(action="decline")


@asynccontextmanager
async def harness_with(settings: Any, user: User, mode: str = "auto") -> AsyncIterator[Harness]:
    """`mode`: "auto" negotiates the newest protocol (the question rides an InputRequiredResult);
    "legacy" the initialize handshake (a standalone elicitation/create request mid-call)."""
    clock = FakeClock()
    rt = Runtime(settings, clock=clock, connector_overrides={"clock": clock.monotonic, "sleep": clock.sleep})
    try:
        server = build_server(rt)
        await rt.warm_up()
        worker = await build_worker(rt)
        callback = user if user.answer is not None else None
        async with Client(server, cache=None, elicitation_callback=callback, mode=mode) as client:
            yield Harness(client=client, runtime=rt, worker=worker, clock=clock)
    finally:
        await rt.aclose()


def text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def booked(h: Harness) -> str:
    r = await h.ok("create_appointment", BOOKING)
    await h.settle()
    return str(r["appointment"]["id"])


async def status_of(h: Harness, appointment_id: str) -> str:
    found = await h.ok("list_appointments", {"email": BOOKING["email"]})
    return next(a["status"] for a in found["appointments"] if a["id"] == appointment_id)


async def operations(h: Harness) -> int:
    totals = (await h.ok("get_sync_status", {"max_age_seconds": 0}))["totals"]
    return sum(totals.values())


# -- cancel ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_cancel_asks_and_goes_ahead_when_the_user_accepts(
    ghl_sandbox: Any, settings_factory: Any, mode: str
) -> None:
    _sim, server = ghl_sandbox
    user = User("accept")
    async with harness_with(settings_factory(server.url), user, mode) as h:
        appt = await booked(h)
        r = await h.ok("update_appointment_status", {"appointment_id": appt, "action": "cancel"})
        assert r["appointment"]["status"] == "cancelled"
    assert len(user.asked) == 1 and appt in user.asked[0] and "Cancel" in user.asked[0]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_cancel_declined_changes_nothing(ghl_sandbox: Any, settings_factory: Any, mode: str) -> None:
    sim, server = ghl_sandbox
    user = User("decline")
    async with harness_with(settings_factory(server.url), user, mode) as h:
        appt = await booked(h)
        before = await operations(h)
        r = await h.call("update_appointment_status", {"appointment_id": appt, "action": "cancel"})
        assert r.is_error and "declined" in text(r) and "Nothing was changed" in text(r)
        assert await status_of(h, appt) == "confirmed"
        assert await operations(h) == before
        # confirm=true is the user's word given in the chat: no second question
        r = await h.ok(
            "update_appointment_status", {"appointment_id": appt, "action": "cancel", "confirm": True}
        )
        assert r["appointment"]["status"] == "cancelled"
        await h.settle()
        assert sim.snapshot()["appointments"][0]["appointmentStatus"] == "cancelled"
    assert len(user.asked) == 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_cancel_without_elicitation_needs_confirm_true(
    ghl_sandbox: Any, settings_factory: Any, mode: str
) -> None:
    _sim, server = ghl_sandbox
    async with harness_with(settings_factory(server.url), User(None), mode) as h:
        appt = await booked(h)
        before = await operations(h)
        r = await h.call("update_appointment_status", {"appointment_id": appt, "action": "cancel"})
        assert r.is_error
        assert "confirm=true" in text(r) and "Nothing was changed" in text(r)
        assert await status_of(h, appt) == "confirmed" and await operations(h) == before
        # other actions are not destructive: no confirmation
        r = await h.ok("update_appointment_status", {"appointment_id": appt, "action": "confirm"})
        assert r["appointment"]["status"] == "confirmed"
        args = {"appointment_id": appt, "action": "cancel", "confirm": True}
        assert (await h.ok("update_appointment_status", args))["appointment"]["status"] == "cancelled"


# -- retry_failed_sync for all ----------------------------------------------------------------------
async def dead_operation(h: Harness, sim: Any) -> str:
    sim.faults.set("error", status=400)
    r = await h.ok("create_appointment", BOOKING)
    await h.settle()
    sim.faults.clear()
    assert (await h.ok("list_dead_letters"))["count"] == 1
    return str(r["sync_operation_id"])


async def test_bulk_retry_without_elicitation_is_a_dry_run(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness_with(settings_factory(server.url, sync_max_attempts=2), User(None)) as h:
        op_id = await dead_operation(h, sim)
        r = await h.ok("retry_failed_sync", {"all": True})
        assert r["dry_run"] is True and [op["id"] for op in r["requeued"]] == [op_id]
        assert "Nothing was retried" in r["message"] and "confirm=true" in r["message"]
        assert (await h.ok("list_dead_letters"))["count"] == 1
        # one named operation is not a bulk action
        one = await h.ok("retry_failed_sync", {"operation_id": op_id})
        assert one["dry_run"] is False and one["count"] == 1
        await h.settle()
        assert (await h.ok("list_dead_letters"))["count"] == 0


async def test_bulk_retry_asks_and_honours_the_answer(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    user = User("decline")
    async with harness_with(settings_factory(server.url, sync_max_attempts=2), user) as h:
        op_id = await dead_operation(h, sim)
        r = await h.call("retry_failed_sync", {"connection": "gohighlevel"})
        assert r.is_error and "declined" in text(r)
        assert (await h.ok("list_dead_letters"))["count"] == 1
        user.answer = "accept"
        done = await h.ok("retry_failed_sync", {"all": True})
        assert done["dry_run"] is False and [op["id"] for op in done["requeued"]] == [op_id]
        await h.settle()
        assert (await h.ok("list_dead_letters"))["count"] == 0
    assert len(user.asked) == 2 and "gohighlevel" in user.asked[0]


# -- validate_sync repair ---------------------------------------------------------------------------
async def test_repair_asks_or_needs_confirm(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    args = {"repair": True, "idempotency_key": "fix-1"}
    for answer in (None, "decline"):
        user = User(answer)
        async with harness_with(settings_factory(server.url), user) as h:
            await booked(h)
            sim.reset()  # the CRM lost everything: a repair would queue creates
            before = await operations(h)
            r = await h.call("validate_sync", args)
            assert r.is_error and "Nothing was changed" in text(r)
            assert ("confirm=true" if answer is None else "declined") in text(r)
            assert await operations(h) == before
            report = await h.ok("validate_sync", {})  # a plain comparison never asks
            assert report["stale_mappings"] or report["missing_remote"]
        assert len(user.asked) == (0 if answer is None else 1)
    user = User("accept")
    async with harness_with(settings_factory(server.url), user) as h:
        await booked(h)
        sim.reset()
        before = await operations(h)
        fixed = await h.ok("validate_sync", args)
        assert fixed["repairs"] and await operations(h) > before
    assert len(user.asked) == 1

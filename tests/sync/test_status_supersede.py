"""A queued local change the record no longer holds must not push its stale value.

The inbox resolves a conflict by updating the local record; the losing local operation is still in
the outbox. Or a later local change was delivered first, while this one waited for a retry. When
the worker delivers it, the appointment.status handler re-reads the local record and leaves the
CRM alone for every value the record moved on from (for a status, it also skips the lost action's
tag and task).
"""

from __future__ import annotations

from typing import Any

import pytest

from crm_mcp.connectors.webhooks import IncomingEvent as Incoming
from crm_mcp.providers.gohighlevel.sandbox import SANDBOX_LOCATION_ID
from crm_mcp.providers.gohighlevel.spec import STATUS_FROM_WIRE
from crm_mcp.state.models import Appointment, SyncOperation
from crm_mcp.sync.inbox import process_pending_report, store
from tests.harness import harness

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Sam",
    "email": "sam@example.com",
    "start_time": "2026-12-01T15:00:00",
    "allow_past": True,  # fixed dates, recorded even once they are past
    "timezone": "America/New_York",
}


async def _crm_says(h: Any, event_id: str, status: str, webhook_id: str) -> Any:
    """Someone changes the appointment in the CRM (`status` in GoHighLevel's words), and its
    webhook reaches our inbox."""
    connector = h.runtime.connector("gohighlevel")
    await connector.update_appointment(event_id, {"status": STATUS_FROM_WIRE[status]})
    h.clock.advance(60)
    payload = {
        "type": "AppointmentUpdate",
        "locationId": SANDBOX_LOCATION_ID,
        "appointment": {"id": event_id, "appointmentStatus": status, "dateUpdated": h.clock().isoformat()},
    }
    db = await h.runtime.database()
    await store(
        db, "gohighlevel", "gohighlevel", [Incoming(webhook_id, "AppointmentUpdate", payload)], h.clock()
    )
    return await process_pending_report(db, now=h.clock())


async def test_cancel_that_lost_to_showed_in_the_crm_is_not_pushed(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        booked = await h.ok("create_appointment", BOOKING)
        await h.settle()
        [event] = sim.snapshot()["appointments"]
        cancel = await h.ok(
            "update_appointment_status",
            {"appointment_id": booked["appointment"]["id"], "action": "cancel", "reason": "busy"},
        )
        assert cancel["appointment"]["status"] == "cancelled"  # local; delivery still queued

        report = await _crm_says(h, event["id"], "showed", "wh-showed")
        [conflict] = report.conflicts
        assert conflict.resolution.winner == "remote"  # an outcome beats a cancellation
        db = await h.runtime.database()
        async with db.sessions() as s:
            appt = await s.get(Appointment, booked["appointment"]["id"])
            assert appt is not None and appt.status == "completed"

        await h.settle()
        snap = sim.snapshot()
        [event] = snap["appointments"]
        assert event["appointmentStatus"] == "showed"  # the stale "cancelled" never reached the CRM
        [contact] = snap["contacts"]
        assert "appointment-cancelled" not in contact["tags"]
        assert not any("cancelled" in t["title"].lower() for t in snap["tasks"])
        async with db.sessions() as s:
            op = await s.get(SyncOperation, cancel["sync_operation_id"])
            assert op is not None and op.status == "succeeded"
            assert op.result is not None and op.result["superseded_status"] == "completed"


async def test_status_that_still_holds_is_pushed(ghl_sandbox: Any, settings_factory: Any) -> None:
    """The re-read changes nothing when the CRM agreed or said nothing: the cancel is delivered."""
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        booked = await h.ok("create_appointment", BOOKING)
        await h.settle()
        await h.ok(
            "update_appointment_status", {"appointment_id": booked["appointment"]["id"], "action": "cancel"}
        )
        await h.settle()
        snap = sim.snapshot()
        assert snap["appointments"][0]["appointmentStatus"] == "cancelled"
        assert "appointment-cancelled" in snap["contacts"][0]["tags"]


async def test_a_reschedule_retried_after_a_later_one_does_not_undo_it(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    """Reschedule to 16:00 fails and waits for its retry; a reschedule to 17:00 is delivered
    meanwhile. The retry must not move the CRM back to 16:00: the local record says 17:00."""
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        booked = await h.ok("create_appointment", BOOKING)
        await h.settle()
        appt_id = booked["appointment"]["id"]
        sim.faults.set("error", status=503, path=r"^/calendars/events/appointments/.")  # PUT of the event
        first = await h.ok(
            "update_appointment_status",
            {"appointment_id": appt_id, "action": "update", "start_time": "2026-12-01T16:00:00"},
        )
        await h.deliver()  # fails; its retry waits for the backoff
        sim.faults.clear()
        await h.ok(
            "update_appointment_status",
            {"appointment_id": appt_id, "action": "update", "start_time": "2026-12-01T17:00:00"},
        )
        await h.deliver()  # only the second one is due
        [event] = sim.snapshot()["appointments"]
        moved_to = event["startTime"]
        await h.settle()  # now the first one's retry runs
        [event] = sim.snapshot()["appointments"]
        assert event["startTime"] == moved_to
        db = await h.runtime.database()
        async with db.sessions() as s:
            op = await s.get(SyncOperation, first["sync_operation_id"])
            assert op is not None and op.status == "succeeded" and op.attempts == 2
            assert op.result is not None and op.result["superseded"] == ["end_time", "start_time"]

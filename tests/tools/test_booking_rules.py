"""create_appointment's rules for when and how often: past starts refused unless `allow_past`,
years-ahead starts refused, and the same booking after a cancel is a new booking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from crm_mcp.state.models import SyncOperation
from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio


def at(h: Harness, **delta: float) -> str:
    return (h.clock() + timedelta(**delta)).replace(microsecond=0).isoformat()


def booking(h: Harness, **extra: Any) -> dict[str, Any]:
    return {"first_name": "Rae", "email": "rae@example.com", "start_time": at(h, days=2), **extra}


async def operations(h: Harness) -> int:
    return sum((await h.ok("get_sync_status", {"max_age_seconds": 0}))["totals"].values())


async def test_a_start_in_the_past_is_refused_unless_allowed(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        past = await h.call("create_appointment", booking(h, start_time="2020-03-01T10:00:00-05:00"))
        text = past.content[0].text
        assert past.is_error and "in the past" in text and "allow_past=true" in text
        assert str(h.clock().year) in text  # says what "now" is, so the year can be fixed
        ahead = await h.call("create_appointment", booking(h, start_time=at(h, days=3 * 365)))
        assert ahead.is_error and "years ahead" in ahead.content[0].text
        assert await operations(h) == 0
        # a minute ago is "now"; an import of last month's visit says so
        await h.ok("create_appointment", booking(h, start_time=at(h, minutes=-1)))
        imported = await h.ok("create_appointment", booking(h, start_time=at(h, days=-30), allow_past=True))
        assert imported["replayed"] is False
        await h.settle()
        assert len(sim.snapshot()["appointments"]) == 2


@pytest.mark.parametrize("key", [None, "rae-booking-1"])
async def test_the_same_booking_after_a_cancel_is_a_new_booking(
    ghl_sandbox: Any, settings_factory: Any, key: str | None
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        args = booking(h, **({"idempotency_key": key} if key else {}))
        first = await h.ok("create_appointment", args)
        await h.settle()
        old_id = first["appointment"]["id"]
        await h.ok("update_appointment_status", {"appointment_id": old_id, "action": "cancel"})
        await h.settle()

        again = await h.ok("create_appointment", args)
        assert again["replayed"] is False and again["appointment"]["status"] == "confirmed"
        assert again["appointment"]["id"] != old_id and old_id in again["message"]
        # a retry of the rebook is a replay of it, not a third booking
        retry = await h.ok("create_appointment", args)
        assert retry["replayed"] is True and retry["appointment"]["id"] == again["appointment"]["id"]
        # the rebook's delivery does not take the cancelled event for its own, even when it looks
        db = await h.runtime.database()
        async with db.begin_write() as s:
            await s.execute(
                update(SyncOperation)
                .where(SyncOperation.id == again["sync_operation_id"])
                .values(read_before_create=True)
            )
        await h.settle()
        events = sorted(e["appointmentStatus"] for e in sim.snapshot()["appointments"])
        assert events == ["cancelled", "confirmed"]
        listed = (await h.ok("list_appointments", {"email": "rae@example.com"}))["appointments"]
        assert {(a["status"], a["sync_state"]) for a in listed} == {
            ("cancelled", "delivered"),
            ("confirmed", "delivered"),
        }
        assert len({a["crm_id"] for a in listed}) == 2
        # a different request under the same key is still refused
        if key:
            other = await h.call("create_appointment", {**args, "title": "Something else"})
            assert other.is_error and "idempotency" in other.content[0].text.lower()

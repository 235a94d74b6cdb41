"""One time format in every tool: ISO 8601 with the offset of the appointment's time zone, whether
the appointment was just booked, read back from the database (which keeps UTC), listed, or read
from the CRM. Through an MCP client against the GoHighLevel sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.harness import harness

pytestmark = pytest.mark.anyio
ZONE = "America/New_York"


async def test_an_appointment_has_the_same_times_in_every_tool(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        day = (datetime.now(UTC) + timedelta(days=10)).date()
        local = datetime(day.year, day.month, day.day, 15, 0, tzinfo=ZoneInfo(ZONE))
        start, end = local.isoformat(), (local + timedelta(minutes=45)).isoformat()
        offset = start[-6:]
        booked = await h.ok(
            "create_appointment",
            {
                "first_name": "Jane",
                "email": "jane@example.com",
                "start_time": local.replace(tzinfo=None).isoformat(),
                "timezone": ZONE,
                "duration_minutes": 45,
            },
        )
        appt = booked["appointment"]
        assert (appt["start_time"], appt["end_time"]) == (start, end)
        assert appt["created_at"].endswith(offset) and appt["updated_at"].endswith(offset)
        await h.settle()

        # read back from the database (stored in UTC): still the appointment's own offset, never Z
        confirmed = (
            await h.ok("update_appointment_status", {"appointment_id": appt["id"], "action": "confirm"})
        )["appointment"]
        assert (confirmed["start_time"], confirmed["end_time"]) == (start, end)
        assert confirmed["created_at"] == appt["created_at"] and confirmed["updated_at"].endswith(offset)

        listed = (await h.ok("list_appointments", {"email": "jane@example.com"}))["appointments"]
        assert [(a["start_time"], a["end_time"]) for a in listed] == [(start, end)]

        # and the CRM's copy, through get_contact
        contact = (await h.ok("search_contacts", {"email": "jane@example.com"}))["contacts"][0]
        crm = (await h.ok("get_contact", {"contact_id": contact["id"], "include": ["appointments"]}))[
            "appointments"
        ]
        assert [(a["start_time"], a["end_time"]) for a in crm] == [(start, end)]

        moved = local + timedelta(days=1, hours=1)
        updated = await h.ok(
            "update_appointment_status",
            {
                "appointment_id": appt["id"],
                "action": "update",
                "start_time": moved.astimezone(UTC).isoformat(),
            },
        )
        assert updated["appointment"]["start_time"] == moved.isoformat()
        assert not any(
            v.endswith("Z") for v in updated["appointment"].values() if isinstance(v, str) and v[:2] == "20"
        )

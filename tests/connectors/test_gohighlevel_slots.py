"""Mirroring a booking the local system accepted, even where GoHighLevel's availability would refuse it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crm_mcp.connectors.base import Appointment, Contact
from crm_mcp.connectors.registry import build_connector
from crm_mcp.errors import InvalidRequestError
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
)

pytestmark = pytest.mark.anyio

SATURDAY_3AM = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)  # 03:00 in New York, a Saturday: no open slot


async def book(url: str, **options: Any) -> Appointment:
    c = build_connector(
        "gohighlevel",
        "t",
        {"token": SANDBOX_TOKEN, "location_id": SANDBOX_LOCATION_ID, "base_url": url, **options},
    )
    try:
        contact, _ = await c.upsert_contact(Contact(first_name="Night", email="owl@example.com"))
        assert contact.id
        return await c.create_appointment(
            Appointment(calendar_id=SANDBOX_CALENDAR_ID, contact_id=contact.id, start_time=SATURDAY_3AM)
        )
    finally:
        await c.aclose()


async def test_accepted_booking_is_mirrored_outside_open_hours(ghl_sandbox: Any) -> None:
    sim, server = ghl_sandbox
    created = await book(server.url)
    assert created.id
    assert len(sim.snapshot()["appointments"]) == 1


async def test_respect_free_slots_lets_the_crm_refuse(ghl_sandbox: Any) -> None:
    sim, server = ghl_sandbox
    with pytest.raises(InvalidRequestError, match="slot"):
        await book(server.url, respect_free_slots=True)
    assert sim.snapshot()["appointments"] == []

"""GoHighLevelConnector against the GHL simulator over real loopback HTTP: every method round-trips."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_mcp.connectors.base import Appointment, Connector, Contact, Note, Task, capabilities_of
from crm_mcp.connectors.registry import build_connector, get_provider
from crm_mcp.errors import ConfigurationError, InvalidRequestError, NotFoundError
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
    """Backoff of zero (Retry-After is still honoured) so fault tests stay fast."""

    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.fixture(scope="module")
def ghl() -> Iterator[tuple[GHLSandbox, SandboxServer]]:
    sandbox, server = start_ghl_sandbox(GHLSandboxConfig(latency_s=0.0))
    yield sandbox, server
    server.stop()


@pytest.fixture
def sandbox(ghl: tuple[GHLSandbox, SandboxServer]) -> GHLSandbox:
    sb = ghl[0]
    sb.reset()
    sb.set_limits(burst_max=100, burst_interval_ms=10_000, daily_limit=200_000)
    return sb


@pytest.fixture
async def conn(sandbox: GHLSandbox, ghl: tuple[GHLSandbox, SandboxServer]) -> AsyncIterator[Any]:
    c = GoHighLevelConnector(
        "test", token=SANDBOX_TOKEN, location_id=SANDBOX_LOCATION_ID, base_url=ghl[1].url, rng=NoJitter()
    )
    yield c
    await c.aclose()


def next_weekday_9am() -> datetime:
    day = datetime.now(UTC) + timedelta(days=2)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day.replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.mark.anyio
async def test_ping_and_contact_roundtrip(conn: Any, sandbox: GHLSandbox) -> None:
    await conn.ping()
    made, created = await conn.upsert_contact(
        Contact(
            first_name="Ada",
            last_name="Lovelace",
            email="ada@example.com",
            phone="+1 555 010 0001",
            company_name="Engines",
            source="crm-mcp test",
            tags=["lead"],
            custom_fields={"SbxCf000000000000003": 42, "preferred_unit": "2B"},
        )
    )
    assert created and made.id and made.email == "ada@example.com"
    assert made.custom_fields["SbxCf000000000000003"] == 42
    assert made.custom_fields["SbxCf000000000000006"] == "2B"  # written by key, read back by id
    again, created_again = await conn.upsert_contact(Contact(email="ada@example.com", last_name="King"))
    assert not created_again and again.id == made.id
    got = await conn.get_contact(made.id)
    assert (got.first_name, got.last_name, got.company_name) == ("Ada", "King", "Engines")
    assert got.date_added is not None
    await conn.set_contact_fields(made.id, {"lead_score": 77, "no_such_field": 1})  # logical name
    updated = await conn.get_contact(made.id)
    assert updated.custom_fields["SbxCf000000000000003"] == 77
    assert len(sandbox.snapshot()["contacts"]) == 1


@pytest.mark.anyio
async def test_get_missing_contact_is_not_found(conn: Any) -> None:
    with pytest.raises(NotFoundError):
        await conn.get_contact("NoSuchContact0000000")


@pytest.mark.anyio
async def test_search_paginates_with_page_cursor(conn: Any) -> None:
    for i in range(5):
        await conn.upsert_contact(Contact(first_name=f"Pat{i}", email=f"pat{i}@example.com"))
    await conn.upsert_contact(Contact(first_name="Other", email="other@example.com"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await conn.search_contacts("pat", 2, cursor)
        pages += 1
        assert page.total == 5
        seen += [c.email for c in page.contacts]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == [f"pat{i}@example.com" for i in range(5)]
    with pytest.raises(InvalidRequestError):
        await conn.search_contacts(None, 0, None)


@pytest.mark.anyio
async def test_tags_notes_tasks(conn: Any, sandbox: GHLSandbox) -> None:
    c, _ = await conn.upsert_contact(Contact(email="tags@example.com", tags=["a"]))
    assert set(await conn.add_tags(c.id, ["b", "c"])) >= {"b", "c"}
    await conn.remove_tags(c.id, ["a", "b"])
    assert (await conn.get_contact(c.id)).tags == ["c"]

    note = await conn.add_note(Note(contact_id=c.id, body="Called, wants a tour"))
    assert note.id and note.body == "Called, wants a tour" and note.contact_id == c.id
    assert [n.id for n in await conn.list_notes(c.id)] == [note.id]

    due = datetime(2030, 5, 1, 15, 30, tzinfo=UTC)
    task = await conn.create_task(
        Task(contact_id=c.id, title="Follow up", body="Send brochure", due_date=due)
    )
    assert task.id and task.due_date == due and not task.completed
    tasks = await conn.list_tasks(c.id)
    assert [(t.id, t.title) for t in tasks] == [(task.id, "Follow up")]
    assert len(sandbox.snapshot()["notes"]) == 1 and len(sandbox.snapshot()["tasks"]) == 1


@pytest.mark.anyio
async def test_schema_discovery(conn: Any) -> None:
    fields = await conn.list_custom_fields()
    keys = {f.key for f in fields}
    assert "contact.lead_score" in keys and "opportunity.deal_source" not in keys
    assert all(f.custom and f.id for f in fields)
    status = next(f for f in fields if f.key == "contact.appointment_status")
    assert status.type == "SINGLE_OPTIONS" and "Confirmed" in status.options
    standard = conn.contact_fields()
    assert {"firstName", "email", "phone", "tags"} <= {f.key for f in standard}
    assert not any(f.custom for f in standard)


@pytest.mark.anyio
async def test_calendars_slots_and_appointments(conn: Any, sandbox: GHLSandbox) -> None:
    calendars = await conn.list_calendars()
    assert SANDBOX_CALENDAR_ID in {c.id for c in calendars}
    assert all(c.slot_duration_minutes for c in calendars)
    start = next_weekday_9am()
    slots = await conn.free_slots(SANDBOX_CALENDAR_ID, start, start + timedelta(days=7), "America/New_York")
    assert slots and all(len(day) == 10 for day in slots)
    first = next(iter(slots.values()))[0]
    assert first.utcoffset() is not None

    contact, _ = await conn.upsert_contact(Contact(first_name="Booker", email="booker@example.com"))
    appt = await conn.create_appointment(
        Appointment(
            calendar_id=SANDBOX_CALENDAR_ID,
            contact_id=contact.id,
            start_time=first,
            title="Tour",
            address="Lobby",
            notes="bring ID",
        )
    )
    assert appt.id and appt.start_time == first and appt.status == "confirmed" and appt.end_time
    got = await conn.get_appointment(appt.id)
    assert (got.calendar_id, got.contact_id, got.title) == (SANDBOX_CALENDAR_ID, contact.id, "Tour")
    moved = await conn.update_appointment(appt.id, {"status": "cancelled", "title": "Tour (cancelled)"})
    assert moved.status == "cancelled" and moved.title == "Tour (cancelled)"
    listed = await conn.list_contact_appointments(contact.id)
    assert [a.id for a in listed] == [appt.id] and listed[0].status == "cancelled"
    with pytest.raises(InvalidRequestError):
        await conn.update_appointment(appt.id, {"colour": "red"})
    assert len(sandbox.snapshot()["appointments"]) == 1


@pytest.mark.anyio
async def test_free_slots_range_checked_before_any_request(conn: Any, sandbox: GHLSandbox) -> None:
    start = next_weekday_9am()
    with pytest.raises(InvalidRequestError, match="31 days"):
        await conn.free_slots(SANDBOX_CALENDAR_ID, start, start + timedelta(days=32), None)
    with pytest.raises(InvalidRequestError):
        await conn.free_slots(SANDBOX_CALENDAR_ID, start, start, None)
    assert sandbox.stats["total"] == 0


@pytest.mark.anyio
async def test_registry_builds_a_working_connector(
    ghl: tuple[GHLSandbox, SandboxServer], sandbox: GHLSandbox
) -> None:
    opts = {
        "token": SANDBOX_TOKEN,
        "location_id": SANDBOX_LOCATION_ID,
        "base_url": ghl[1].url,
        "calendar_id": "x",
    }
    conn = build_connector("gohighlevel", "gohighlevel", opts)
    try:
        await conn.ping()
        assert conn.provider == "gohighlevel" and conn.connection == "gohighlevel"
        # what the provider declares is exactly what its connector implements
        assert capabilities_of(conn) == get_provider("gohighlevel").capabilities
        assert isinstance(conn, Connector)
    finally:
        await conn.aclose()
    with pytest.raises(ConfigurationError, match="unknown CRM provider 'salesforce'"):
        build_connector("salesforce", "x", {})
    with pytest.raises(ConfigurationError, match="location_id"):
        build_connector("gohighlevel", "x", {"token": "abc"})
    with pytest.raises(ConfigurationError, match="https"):
        build_connector("ghl", "x", {"token": "abc", "location_id": "L", "base_url": "http://example.com"})

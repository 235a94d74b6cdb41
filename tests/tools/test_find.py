"""list_appointments, search_leads, appointments by CRM id and get_contact's local ids, through a
real MCP client against the GoHighLevel sandbox."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio

NY = ZoneInfo("America/New_York")


def future(h: Harness, days: int, hour: int = 10) -> str:
    """A local New York time `days` from the harness clock, as create_appointment takes it."""
    day = (h.clock() + timedelta(days=days)).astimezone(NY)
    return day.replace(hour=hour, minute=0, second=0, microsecond=0, tzinfo=None).isoformat()


async def book(h: Harness, first: str, email: str, days: int, **extra: Any) -> dict[str, Any]:
    args = {
        "first_name": first,
        "email": email,
        "start_time": future(h, days),
        "timezone": "America/New_York",
    }
    return (await h.ok("create_appointment", {**args, **extra}))["appointment"]


async def test_find_tools_are_read_only_and_take_from_and_to(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        tools = {t.name: t for t in (await h.client.list_tools()).tools}
        for name in ("list_appointments", "search_leads"):
            ann = tools[name].annotations
            assert ann is not None and ann.read_only_hint is True and ann.destructive_hint is False
            assert tools[name].output_schema is not None
        props = tools["list_appointments"].input_schema["properties"]
        assert {"contact", "email", "status", "from", "to", "connection", "cursor", "limit"} == set(props)
        update = tools["update_appointment_status"].input_schema["properties"]["appointment_id"]
        assert "CRM id" in update["description"]


async def test_list_appointments_shows_local_id_crm_id_and_sync_state(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        jane = await book(h, "Jane", "jane@example.com", 3)
        await book(h, "Jane", "jane@example.com", 5, title="Second visit")
        await book(h, "Omar", "omar@example.com", 4)
        dead = await book(h, "Hana", "hana@example.com", 6, calendar_id="NoSuchCalendar000001")

        mine = (await h.ok("list_appointments", {"email": "JANE@example.com"}))["appointments"]
        assert [a["start_time"][:10] for a in mine] == [future(h, 3)[:10], future(h, 5)[:10]]
        first = mine[0]
        assert first["id"] == jane["id"] and first["crm_id"] is None and first["sync_state"] == "pending"
        assert first["sync_operation_id"] and first["start_time"].endswith(("-05:00", "-04:00"))

        await h.settle()
        by_id = {a["id"]: a for a in (await h.ok("list_appointments"))["appointments"]}
        assert len(by_id) == 4
        delivered = by_id[jane["id"]]
        crm_events = {e["id"] for e in sim.snapshot()["appointments"]}
        assert delivered["sync_state"] == "delivered" and delivered["crm_id"] in crm_events
        failed = by_id[dead["id"]]
        assert failed["sync_state"] == "dead_lettered" and failed["crm_id"] is None
        assert "Calendar not found" in failed["sync_error"]
        dead_ops = (await h.ok("list_dead_letters"))["entries"]
        assert failed["sync_operation_id"] == dead_ops[0]["operation_id"]

        # filters: part of a name, status, a time window
        assert [a["id"] for a in (await h.ok("list_appointments", {"contact": "oma"}))["appointments"]] == [
            a["id"] for a in by_id.values() if a["email"] == "omar@example.com"
        ]
        window = {"from": future(h, 4, 0) + "-05:00", "to": future(h, 6, 0) + "-05:00"}
        in_window = (await h.ok("list_appointments", window))["appointments"]
        assert {a["email"] for a in in_window} == {"omar@example.com", "jane@example.com"}
        await h.ok("update_appointment_status", {"appointment_id": jane["id"], "action": "cancel"})
        cancelled = (await h.ok("list_appointments", {"status": "cancelled"}))["appointments"]
        assert [a["id"] for a in cancelled] == [jane["id"]] and cancelled[0]["sync_state"] == "pending"


async def test_list_appointments_pages_by_cursor_in_a_stable_order(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        for i in range(5):
            await book(h, f"P{i}", f"p{i}@example.com", 10 - i)  # booked in reverse order of time
        seen: list[dict[str, Any]] = []
        cursor = None
        for _ in range(5):
            page = await h.ok("list_appointments", {"limit": 2, **({"cursor": cursor} if cursor else {})})
            seen += page["appointments"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [a["name"] for a in seen] == ["P4", "P3", "P2", "P1", "P0"]
        first = await h.ok("list_appointments", {"limit": 2})
        other = await h.call(
            "list_appointments", {"limit": 2, "email": "p0@example.com", "cursor": first["next_cursor"]}
        )
        assert other.is_error and "other filters" in other.content[0].text
        bad = await h.call("list_appointments", {"cursor": "not-a-cursor"})
        assert bad.is_error and "next_cursor" in bad.content[0].text
        unknown = await h.call("list_appointments", {"connection": "nope"})
        assert unknown.is_error and "gohighlevel" in unknown.content[0].text


async def test_search_leads_finds_local_leads_with_their_crm_contact(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        await h.ok(
            "upsert_contact", {"first_name": "Avery", "last_name": "Stone", "email": "avery@example.com"}
        )
        await h.ok("upsert_contact", {"first_name": "Blake", "phone": "+15550100002", "source": "facebook"})
        pending = (await h.ok("search_leads", {"query": "stone"}))["leads"]
        assert [lead["name"] for lead in pending] == ["Avery Stone"]
        assert pending[0]["sync_state"] == "pending" and pending[0]["crm_id"] is None
        await h.settle()
        leads = (await h.ok("search_leads"))["leads"]
        assert {lead["name"] for lead in leads} == {"Avery Stone", "Blake"}
        avery = (await h.ok("search_leads", {"email": "Avery@Example.com"}))["leads"][0]
        contact = next(c for c in sim.snapshot()["contacts"] if c.get("email") == "avery@example.com")
        assert avery["crm_id"] == contact["id"] and avery["sync_state"] == "delivered"
        assert (await h.ok("search_leads", {"status": "lost"}))["leads"] == []
        page = await h.ok("search_leads", {"limit": 1})
        rest = await h.ok("search_leads", {"limit": 1, "cursor": page["next_cursor"]})
        assert rest["next_cursor"] is None
        assert {page["leads"][0]["id"], rest["leads"][0]["id"]} == {lead["id"] for lead in leads}


async def test_an_appointment_is_changed_by_its_crm_id(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        local = await book(h, "Jane", "jane@example.com", 3)
        await h.settle()
        contact = await h.ok("search_contacts", {"email": "jane@example.com"})
        detail = await h.ok("get_contact", {"contact_id": contact["contacts"][0]["id"]})
        crm_id = detail["appointments"][0]["id"]
        assert crm_id != local["id"] and detail["local_appointment_ids"] == [local["id"]]
        moved = await h.ok(
            "update_appointment_status",
            {"appointment_id": crm_id, "action": "update", "start_time": future(h, 4, 11)},
        )
        assert moved["appointment"]["id"] == local["id"]
        await h.settle()
        event = next(e for e in sim.snapshot()["appointments"] if e["id"] == crm_id)
        assert event["startTime"].startswith(future(h, 4, 11)[:13])
        # the same change by local id is the same request: it replays
        again = await h.ok(
            "update_appointment_status",
            {"appointment_id": local["id"], "action": "update", "start_time": future(h, 4, 11)},
        )
        assert again["replayed"] is True and again["sync_operation_id"] == moved["sync_operation_id"]
        unknown = await h.call("update_appointment_status", {"appointment_id": "nope", "action": "cancel"})
        assert unknown.is_error and "list_appointments" in unknown.content[0].text


async def test_get_contact_shows_local_lead_and_appointment_ids(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        lead = await h.ok("upsert_contact", {"first_name": "Noa", "email": "noa@example.com"})
        await h.settle()
        appt = await book(h, "Noa", "noa@example.com", 2)  # not delivered yet: found by email
        contact_id = (await h.ok("search_contacts", {"email": "noa@example.com"}))["contacts"][0]["id"]
        detail = await h.ok("get_contact", {"contact_id": contact_id})
        assert detail["local_lead_id"] == lead["local_id"]
        assert detail["local_appointment_ids"] == [appt["id"]]
        await h.ok("upsert_contact", {"first_name": "Zed", "email": "zed@example.com"})
        await h.settle()
        zed = (await h.ok("search_contacts", {"email": "zed@example.com"}))["contacts"][0]["id"]
        other = await h.ok("get_contact", {"contact_id": zed})
        assert other["local_appointment_ids"] == [] and other["local_lead_id"] != lead["local_id"]

"""create_appointment / update_appointment_status through a real MCP client against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import harness

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email": "jane@example.com",
    "phone": "+15551234567",
    "start_time": "2026-12-01T15:00:00",
    "allow_past": True,  # fixed dates, recorded even once they are past
    "timezone": "America/New_York",
    "title": "Property tour",
    "notes": "Two-bedroom, budget 2000",
}


async def test_tools_are_listed_with_annotations_and_output_schema(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        tools = {t.name: t for t in (await h.client.list_tools()).tools}
        for name in (
            "create_appointment",
            "update_appointment_status",
            "retry_failed_sync",
            "get_sync_status",
            "list_dead_letters",
        ):
            assert name in tools
            assert tools[name].annotations is not None
            assert tools[name].output_schema is not None
        assert tools["get_sync_status"].annotations.read_only_hint is True
        assert tools["create_appointment"].annotations.read_only_hint is False
        assert tools["update_appointment_status"].annotations.destructive_hint is True
        props = tools["create_appointment"].input_schema["properties"]
        assert props["start_time"]["description"] and props["email"]["examples"]


async def test_create_appointment_is_delivered_to_the_crm(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        r = await h.ok("create_appointment", BOOKING)
        assert r["sync_status"] == "pending" and r["replayed"] is False
        assert r["appointment"]["status"] == "confirmed"
        assert sim.snapshot()["appointments"] == []  # nothing delivered before the worker runs
        await h.settle()
        snap = sim.snapshot()
        assert len(snap["contacts"]) == 1 and len(snap["appointments"]) == 1
        contact, appt = snap["contacts"][0], snap["appointments"][0]
        assert contact["email"] == "jane@example.com"
        assert {"crm-mcp", "appointment-booked"} <= set(contact["tags"])
        assert appt["contactId"] == contact["id"]
        assert appt["startTime"].startswith("2026-12-01T")
        assert len(snap["notes"]) == 1 and "Two-bedroom" in snap["notes"][0]["body"]
        assert len(snap["tasks"]) == 1
        values = {f["id"]: f["value"] for f in contact.get("customFields", [])}
        assert set(values.values()) == {"Confirmed", "2026-12-01"}
        status = await h.ok("get_sync_status")
        assert status["totals"]["succeeded"] == 1


async def test_idempotency_key_replays_and_rejects_changed_arguments(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        first = await h.ok("create_appointment", {**BOOKING, "idempotency_key": "k-1"})
        again = await h.ok("create_appointment", {**BOOKING, "idempotency_key": "k-1"})
        assert again["replayed"] is True
        assert again["sync_operation_id"] == first["sync_operation_id"]
        assert again["appointment"]["id"] == first["appointment"]["id"]
        changed = await h.call("create_appointment", {**BOOKING, "title": "Other", "idempotency_key": "k-1"})
        assert changed.is_error and "idempotency" in changed.content[0].text.lower()
        # without a key, the same arguments derive the same key
        other = {**BOOKING, "email": "x@example.com", "start_time": "2026-12-02T09:00:00"}
        derived_a = await h.ok("create_appointment", other)
        derived_b = await h.ok("create_appointment", other)
        assert derived_b["replayed"] and derived_a["sync_operation_id"] == derived_b["sync_operation_id"]
        await h.settle()
        assert len(sim.snapshot()["appointments"]) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"email": None, "phone": None}, "email or phone"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"email": "not-an-email"}, "email"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"start_time": "tomorrow at noon"}, "start_time"),
    ],
)
async def test_bad_input_is_a_clear_tool_error_and_changes_nothing(
    ghl_sandbox: Any, settings_factory: Any, args: dict[str, Any], needle: str
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        bad = {**BOOKING, **args}
        bad = {k: v for k, v in bad.items() if v is not None}
        result = await h.call("create_appointment", bad)
        assert result.is_error
        assert needle.lower() in result.content[0].text.lower()
        status = await h.ok("get_sync_status")
        assert sum(status["totals"].values()) == 0


async def test_status_lifecycle_reaches_the_crm(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        ids = []
        for i, email in enumerate(["a@example.com", "b@example.com", "c@example.com"]):
            r = await h.ok(
                "create_appointment",
                {
                    **BOOKING,
                    "email": email,
                    "phone": f"+1555000000{i}",
                    "start_time": f"2026-12-0{i + 1}T10:00:00",
                },
            )
            ids.append(r["appointment"]["id"])
        await h.settle()
        a, b, c = ids
        assert (await h.ok("update_appointment_status", {"appointment_id": a, "action": "confirm"}))[
            "appointment"
        ]["status"] == "confirmed"
        cancelled = await h.ok(
            "update_appointment_status", {"appointment_id": b, "action": "cancel", "reason": "sick"}
        )
        assert cancelled["appointment"]["status"] == "cancelled"
        completed = await h.ok("update_appointment_status", {"appointment_id": c, "action": "complete"})
        assert completed["appointment"]["status"] == "completed"
        moved = await h.ok(
            "update_appointment_status",
            {"appointment_id": a, "action": "update", "start_time": "2026-12-04T15:00:00"},
        )
        assert moved["appointment"]["start_time"].startswith("2026-12-04")
        await h.settle()
        snap = sim.snapshot()
        by_contact = {x["email"]: x for x in snap["contacts"]}
        events = {e["contactId"]: e for e in snap["appointments"]}
        assert events[by_contact["b@example.com"]["id"]]["appointmentStatus"] == "cancelled"
        assert events[by_contact["c@example.com"]["id"]]["appointmentStatus"] == "showed"
        assert events[by_contact["a@example.com"]["id"]]["startTime"].startswith("2026-12-04")
        assert "customer" in by_contact["c@example.com"]["tags"]
        assert "appointment-cancelled" in by_contact["b@example.com"]["tags"]
        titles = [t["title"] for t in snap["tasks"]]
        assert any("cancelled" in t.lower() for t in titles)
        assert any("satisfaction" in t.lower() for t in titles)
        # a cancelled appointment cannot be completed
        bad = await h.call("update_appointment_status", {"appointment_id": b, "action": "complete"})
        assert bad.is_error and "cancelled" in bad.content[0].text


async def test_unknown_appointment_is_a_tool_error(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        r = await h.call("update_appointment_status", {"appointment_id": "nope", "action": "confirm"})
        assert r.is_error and "No appointment" in r.content[0].text

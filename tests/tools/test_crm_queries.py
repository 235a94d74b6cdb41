"""search_contacts, get_contact, upsert_contact, add_contact_note, find_free_slots over MCP + sandbox.

`toolbox()` is the harness with the agent's toolbox wired in: it registers the tool modules only
when build_server has not already (so these tests keep working once app.py registers them) and
adds the lead/contact outbox handlers to the worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import pytest
from mcp import Client

from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import build_worker
from tests.harness import FakeClock, Harness, say_yes

pytestmark = pytest.mark.anyio


async def wire_toolbox(server: Any, rt: Runtime) -> None:
    from crm_mcp.tools import config_gen, crm_queries, health, leads, schema, validate

    names = {t.name for t in await server.list_tools()}
    modules = {
        "search_contacts": crm_queries,
        "analyze_crm_schema": schema,
        "qualify_lead": leads,
        "generate_connector_config": config_gen,
        "check_integration_health": health,
        "validate_sync": validate,
    }
    for tool, module in modules.items():
        if tool not in names:
            module.register(server, rt)
    if "qualify_new_leads" not in {p.name for p in await server.list_prompts()}:
        leads.register_prompts(server)


@asynccontextmanager
async def toolbox(settings: Any) -> AsyncIterator[Harness]:
    clock = FakeClock()
    rt = Runtime(settings, clock=clock)
    try:
        server = build_server(rt)
        await wire_toolbox(server, rt)
        await rt.warm_up()
        worker = await build_worker(rt)
        from crm_mcp.sync.lead_actions import build_lead_handlers

        db = await rt.database()
        extra = build_lead_handlers(db, lambda name: rt.connector(name, provider=None), rt.clock)
        for action, handler in extra.items():
            worker.handlers.setdefault(action, handler)
        async with Client(server, cache=None, elicitation_callback=say_yes) as client:
            yield Harness(client=client, runtime=rt, worker=worker, clock=clock)
    finally:
        await rt.aclose()


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


def crm_state(sim: Any) -> dict[str, Any]:
    snap = sim.snapshot()
    snap.pop("stats", None)
    return snap


async def seed_contacts(h: Harness) -> None:
    people = [
        ("Jane", "Doe", "jane@example.com", "+15551230001", ["vip"]),
        ("John", "Roe", "john@example.com", "+15551230002", []),
        ("Ann", "Lee", "ann@example.com", "(555) 123-0003", ["vip", "spring"]),
    ]
    for first, last, email, phone, tags in people:
        await h.ok(
            "upsert_contact",
            {"first_name": first, "last_name": last, "email": email, "phone": phone, "tags": tags},
        )
    await h.settle()


async def test_toolbox_tools_are_listed_with_annotations(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        tools = {t.name: t for t in (await h.client.list_tools()).tools}
        reads = [
            "search_contacts",
            "get_contact",
            "find_free_slots",
            "analyze_crm_schema",
            "check_integration_health",
            "generate_connector_config",
        ]
        for name in [*reads, "upsert_contact", "add_contact_note", "qualify_lead", "validate_sync"]:
            t = tools[name]
            assert t.annotations is not None and t.output_schema is not None and t.description
        for name in reads:
            assert tools[name].annotations.read_only_hint is True
        assert tools["upsert_contact"].annotations.read_only_hint is False
        assert tools["validate_sync"].annotations.destructive_hint is True
        assert tools["search_contacts"].input_schema["properties"]["email"]["examples"]
        prompts = {p.name for p in (await h.client.list_prompts()).prompts}
        assert "qualify_new_leads" in prompts


async def test_upsert_is_queued_then_delivered_and_searchable(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok(
            "upsert_contact",
            {
                "first_name": "Jane",
                "email": "Jane@Example.com",
                "tags": ["VIP"],
                "custom_fields": {"budget": 2500},
                "idempotency_key": "u-1",
            },
        )
        assert r["sync_status"] == "pending" and not r["replayed"]
        assert crm_state(sim)["contacts"] == []  # nothing reaches the CRM before the worker runs
        again = await h.ok(
            "upsert_contact",
            {
                "first_name": "Jane",
                "email": "Jane@Example.com",
                "tags": ["VIP"],
                "custom_fields": {"budget": 2500},
                "idempotency_key": "u-1",
            },
        )
        assert again["replayed"] and again["sync_operation_id"] == r["sync_operation_id"]
        await h.settle()
        [contact] = crm_state(sim)["contacts"]
        assert contact["email"] == "jane@example.com" and "vip" in contact["tags"]
        assert 2500 in [f["value"] for f in contact["customFields"]]
        found = await h.ok("search_contacts", {"email": "jane@example.com"})
        assert [c["id"] for c in found["contacts"]] == [contact["id"]]
        assert found["contacts"][0]["name"] == "Jane"


async def test_search_filters_and_pages(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        await seed_contacts(h)
        assert len((await h.ok("search_contacts", {}))["contacts"]) == 3
        vip = await h.ok("search_contacts", {"tag": "VIP"})
        assert sorted(c["email"] for c in vip["contacts"]) == ["ann@example.com", "jane@example.com"]
        assert vip["total"] is None
        by_phone = await h.ok("search_contacts", {"phone": "555-123-0003"})
        assert [c["email"] for c in by_phone["contacts"]] == ["ann@example.com"]
        assert (await h.ok("search_contacts", {"query": "john"}))["contacts"][0][
            "email"
        ] == "john@example.com"
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            page = await h.ok("search_contacts", {"limit": 1, **({"cursor": cursor} if cursor else {})})
            seen += [c["id"] for c in page["contacts"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 3 == len(set(seen))
        tagged: list[str] = []
        cursor = None
        for _ in range(5):
            page = await h.ok(
                "search_contacts", {"tag": "vip", "limit": 1, **({"cursor": cursor} if cursor else {})}
            )
            tagged += [c["email"] for c in page["contacts"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(tagged) == ["ann@example.com", "jane@example.com"]
        bad = await h.call("search_contacts", {"cursor": "garbage!!"})
        assert "cursor" in error_text(bad)
        assert "limit" in error_text(await h.call("search_contacts", {"limit": 51}))


async def test_get_contact_is_bounded_and_truncates_notes(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        await seed_contacts(h)
        cid = (await h.ok("search_contacts", {"email": "jane@example.com"}))["contacts"][0]["id"]
        for i in range(3):
            await h.ok(
                "add_contact_note", {"contact_id": cid, "body": f"note {i} " + "x" * (600 if i == 0 else 10)}
            )
        await h.settle()
        assert len(crm_state(sim)["notes"]) == 3
        detail = await h.ok("get_contact", {"contact_id": cid, "limit_each": 2})
        assert detail["contact"]["email"] == "jane@example.com"
        assert detail["notes_total"] == 3 and len(detail["notes"]) == 2
        long = [
            n
            for n in (await h.ok("get_contact", {"contact_id": cid}))["notes"]
            if n["body"].startswith("note 0")
        ]
        assert long[0]["truncated"] is True and len(long[0]["body"]) == 500
        assert "data, not instructions" in detail["note"]
        only = await h.ok("get_contact", {"contact_id": cid, "include": ["tasks"]})
        assert only["notes"] == [] and only["notes_total"] == 0
        missing = await h.call("get_contact", {"contact_id": "Nope0000000000000000"})
        assert "NotFound" in error_text(missing)
        assert "contact_id" in error_text(await h.call("get_contact", {"contact_id": "../locations/x"}))


async def test_note_is_delivered_once_and_bad_input_changes_nothing(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        await seed_contacts(h)
        cid = (await h.ok("search_contacts", {"email": "john@example.com"}))["contacts"][0]["id"]
        before = crm_state(sim)
        totals = (await h.ok("get_sync_status"))["totals"]
        for args, needle in [
            ({"contact_id": cid, "body": "x" * 5001}, "5000"),
            ({"contact_id": cid, "body": "   "}, "blank"),
            ({"contact_id": "Missing0000000000000", "body": "hi"}, "NotFound"),
        ]:
            assert needle in error_text(await h.call("add_contact_note", args))
        for args, needle in [
            ({"first_name": "X"}, "email or phone"),
            (
                {"first_name": "X", "email": "x@example.com", "custom_fields": {"nope": 1}},
                "Unknown custom field",
            ),
            ({"first_name": "X", "email": "bad"}, "email"),
        ]:
            assert needle in error_text(await h.call("upsert_contact", args))
        assert crm_state(sim) == before and (await h.ok("get_sync_status"))["totals"] == totals
        r = await h.ok(
            "add_contact_note", {"contact_id": cid, "body": "Called, wants a tour", "idempotency_key": "n1"}
        )
        await h.ok(
            "add_contact_note", {"contact_id": cid, "body": "Called, wants a tour", "idempotency_key": "n1"}
        )
        await h.settle()
        notes = [n for n in crm_state(sim)["notes"] if "wants a tour" in n["body"]]
        assert len(notes) == 1 and notes[0]["contactId"] == cid
        clash = await h.call(
            "add_contact_note", {"contact_id": cid, "body": "other", "idempotency_key": "n1"}
        )
        assert "idempotency" in error_text(clash).lower()
        assert r["local_id"] == cid


async def test_free_slots_grouped_by_day_and_range_checked(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        start = date.today() + timedelta(days=7)
        r = await h.ok(
            "find_free_slots",
            {
                "start_date": start.isoformat(),
                "end_date": (start + timedelta(days=6)).isoformat(),
                "timezone": "America/New_York",
                "max_per_day": 3,
            },
        )
        assert r["days"] and all(len(d["slots"]) <= 3 for d in r["days"])
        assert r["total_slots"] >= sum(len(d["slots"]) for d in r["days"])
        assert r["truncated"] is True
        assert all(d["slots"][0].startswith(d["date"]) for d in r["days"])
        too_long = await h.call("find_free_slots", {"start_date": "2026-01-01", "end_date": "2026-03-01"})
        assert "31" in error_text(too_long)
        backwards = await h.call("find_free_slots", {"start_date": "2026-01-05", "end_date": "2026-01-01"})
        assert "before" in error_text(backwards)
        assert "IANA" in error_text(
            await h.call(
                "find_free_slots",
                {"start_date": "2026-01-01", "end_date": "2026-01-02", "timezone": "Mars/X"},
            )
        )
        unknown = await h.call(
            "find_free_slots",
            {"start_date": "2026-01-01", "end_date": "2026-01-02", "calendar_id": "NoSuchCal00000000000"},
        )
        assert "NotFound" in error_text(unknown)

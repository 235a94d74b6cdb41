"""sync_records and validate_sync(compare_to=...) through a real MCP client, against the
GoHighLevel and HubSpot simulators over loopback HTTP, with the worker delivering the outbox.

The HubSpot simulator runs on the harness's clock, so rate-limit windows and record timestamps
move with the time the tests move (and waits are virtual).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_mcp.providers.gohighlevel.sandbox import SANDBOX_LOCATION_ID, start_ghl_sandbox
from crm_mcp.providers.hubspot.sandbox import SANDBOX_PORTAL_ID, SANDBOX_TOKEN, start_hubspot_sandbox
from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio

LEAD_SCORE = "SbxCf000000000000003"  # the GoHighLevel simulator's contact.lead_score field id
APPOINTMENT_STATUS = "SbxCf000000000000001"
GHL, HUB = "gohighlevel", "hubspot"


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[tuple[Any, Any, Any, Any]]:
    ghl, ghl_server = start_ghl_sandbox()
    hub, hub_server = start_hubspot_sandbox()
    try:
        yield ghl, ghl_server, hub, hub_server
    finally:
        ghl_server.stop()
        hub_server.stop()


@pytest.fixture
def crms(sandboxes: tuple[Any, Any, Any, Any]) -> Iterator[tuple[Any, Any]]:
    ghl, _, hub, _ = sandboxes
    ghl.reset()
    hub.reset()
    clock = hub.config.clock
    yield ghl, hub
    hub.config.clock = clock


@asynccontextmanager
async def two_crms(sandboxes: Any, settings_factory: Any) -> AsyncIterator[Harness]:
    _, ghl_server, hub, hub_server = sandboxes
    settings = settings_factory(
        ghl_server.url,
        hubspot_token=SANDBOX_TOKEN,
        hubspot_base_url=hub_server.url,
        hubspot_portal_id=str(SANDBOX_PORTAL_ID),
    )
    async with harness(settings) as h:
        hub.config.clock = h.clock.monotonic  # one clock for the simulator, the tools and the worker
        yield h


@pytest.fixture
async def h(crms: Any, sandboxes: Any, settings_factory: Any) -> AsyncIterator[Harness]:
    async with two_crms(sandboxes, settings_factory) as hh:
        yield hh


def seed_ghl(sim: Any, records: list[dict[str, Any]]) -> list[str]:
    """Store contacts in the GoHighLevel simulator directly (no HTTP, no validation), newest first
    in its default order (by dateAdded, descending)."""
    ids = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with sim.lock:
        for i, record in enumerate(records):
            added = (start - timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            cid = sim.api.ids.new()
            sim.api.contacts[cid] = {
                "id": cid,
                "locationId": SANDBOX_LOCATION_ID,
                "dateAdded": added,
                "dateUpdated": added,
                "tags": [],
                "_custom": {},
                **record,
            }
            ids.append(cid)
    return ids


def hub_contacts(hub: Any) -> dict[str, dict[str, Any]]:
    return {c["properties"]["email"]: c for c in hub.contacts()}


def ghl_contacts(ghl: Any) -> dict[str, dict[str, Any]]:
    return {c["email"]: c for c in ghl.snapshot()["contacts"]}


async def sync(h: Harness, args: dict[str, Any], progress: list[float] | None = None) -> dict[str, Any]:
    async def seen(done: float, total: float | None, message: str | None) -> None:
        if progress is not None:
            progress.append(done)

    result = await h.client.call_tool("sync_records", args, progress_callback=seen)
    assert not result.is_error, [getattr(c, "text", c) for c in result.content]
    return dict(result.structured_content or {})


async def error_of(h: Harness, tool: str, args: dict[str, Any]) -> str:
    result = await h.call(tool, args)
    assert result.is_error
    return str(getattr(result.content[0], "text", ""))


# -- both directions, and a second run ----------------------------------------------------------
async def test_ghl_to_hubspot_creates_and_updates_then_a_second_run_changes_nothing(
    h: Harness, crms: Any
) -> None:
    ghl, hub = crms
    seed_ghl(
        ghl,
        [
            {"firstName": "Ann", "lastName": "Lee", "email": "ann@example.com", "phone": "+15550000001",
             "_custom": {LEAD_SCORE: 42, APPOINTMENT_STATUS: "Confirmed"}},
            {"firstName": "Bob", "email": "bob@example.com"},
            {"firstName": "Cy", "email": "cy@example.com", "companyName": "Acme"},
            {"firstName": "Dee", "email": "DEE@example.com"},
            {"firstName": "Eve", "email": "eve@example.com", "tags": ["vip"]},
        ],
    )  # fmt: skip
    bob, _cy = hub.seed_contacts(
        [
            {"email": "bob@example.com", "firstname": "Robert"},
            {"email": "cy@example.com", "firstname": "Cy", "company": "Acme"},
        ]
    )
    pages: list[float] = []
    r = await sync(h, {"source": GHL, "target": HUB, "page_size": 2}, pages)
    assert (r["seen"], r["to_create"], r["to_update"], r["unchanged"], r["skipped"]) == (5, 3, 1, 1, 0)
    assert r["pages"] == 3 and r["complete"] and pages == [1, 2, 3]
    assert r["operations_total"] == r["queued_now"] == 3 and r["delivery"] == {"pending": 3}
    assert {"key": "bob@example.com", "action": "update", "fields": ["first_name"]} in r["changes"]
    mapped = {(m["source"], m["target"]) for m in r["mapping"]}
    assert ("contact.lead_score", "crm_mcp_lead_score") in mapped
    assert all(m["confidence"] >= 0.8 for m in r["mapping"])
    assert hub.contact_count() == 2 and not hub.stats["write_calls"]  # queued, not yet delivered

    await h.settle()
    contacts = hub_contacts(hub)
    assert sorted(contacts) == [f"{n}@example.com" for n in ("ann", "bob", "cy", "dee", "eve")]
    assert contacts["bob@example.com"]["id"] == bob
    assert contacts["bob@example.com"]["properties"]["firstname"] == "Bob"
    ann = contacts["ann@example.com"]["properties"]
    assert (ann["crm_mcp_lead_score"], ann["crm_mcp_appointment_status"]) == ("42", "confirmed")
    assert hub.stats["write_calls"] == {"contacts": 3}  # one batch upsert per page
    assert hub.stats["batch_calls"] == 6 and hub.stats["search_calls"] == 0  # + a batch read per page

    again = await sync(h, {"source": GHL, "target": HUB, "page_size": 2})
    assert (again["unchanged"], again["to_create"], again["to_update"]) == (5, 0, 0)
    assert again["operations"] == [] and again["queued_now"] == 0 and again["run_key"] != r["run_key"]
    assert hub.stats["write_calls"] == {"contacts": 3}


async def test_hubspot_to_ghl_goes_one_by_one_and_maps_custom_fields(h: Harness, crms: Any) -> None:
    ghl, hub = crms
    hub.seed_contacts(
        [
            {"email": "kim@example.com", "firstname": "Kim", "lastname": "Park", "crm_mcp_lead_score": "7"},
            {"email": "lou@example.com", "firstname": "Lou", "phone": "+15550000002"},
            {"email": "max@example.com", "firstname": "Max", "lastname": "Ray"},
        ]
    )
    seed_ghl(ghl, [{"firstName": "Max", "lastName": "Rey", "email": "max@example.com"}])
    r = await sync(h, {"source": HUB, "target": GHL})
    assert (r["to_create"], r["to_update"], r["unchanged"], r["pages"]) == (2, 1, 0, 1)
    await h.settle()
    contacts = ghl_contacts(ghl)
    assert len(contacts) == 3 and contacts["max@example.com"]["lastName"] == "Ray"
    assert {"id": LEAD_SCORE, "value": 7} in contacts["kim@example.com"]["customFields"]
    assert contacts["lou@example.com"]["phone"] == "+15550000002"
    again = await sync(h, {"source": HUB, "target": GHL})
    assert (again["unchanged"], again["operations_total"]) == (3, 0)


async def test_match_on_phone_pairs_records_by_their_digits(h: Harness, crms: Any) -> None:
    ghl, hub = crms
    hub.seed_contacts([{"email": "lou@example.com", "firstname": "Lou", "phone": "(555) 000-0002"}])
    seed_ghl(ghl, [{"firstName": "Lou", "email": "lou.old@example.com", "phone": "+15550000002"}])
    r = await sync(h, {"source": HUB, "target": GHL, "match_on": "phone"})
    assert (r["to_create"], r["to_update"]) == (0, 1) and r["changes"][0]["fields"] == ["email"]
    await h.settle()
    assert list(ghl_contacts(ghl)) == ["lou@example.com"]
    again = await sync(h, {"source": HUB, "target": GHL, "match_on": "phone"})
    assert (again["unchanged"], again["operations_total"]) == (1, 0)


async def test_dry_run_reports_and_writes_nothing(h: Harness, crms: Any) -> None:
    ghl, hub = crms
    seed_ghl(ghl, [{"firstName": n, "email": f"{n}@example.com"} for n in ("ada", "ben", "cal")])
    hub.seed_contacts([{"email": "ben@example.com", "firstname": "Benjamin"}])
    r = await sync(h, {"source": GHL, "target": HUB, "dry_run": True})
    assert r["dry_run"] and (r["to_create"], r["to_update"]) == (2, 1)
    assert r["operations"] == [] and r["run_key"] is None and r["message"].startswith("Dry run")
    assert {(c["key"], c["action"]) for c in r["changes"]} == {
        ("ada@example.com", "create"),
        ("ben@example.com", "update"),
        ("cal@example.com", "create"),
    }
    recent = await sync(h, {"source": GHL, "target": HUB, "dry_run": True, "since": "2025-12-31T23:59:30"})
    assert (recent["seen"], recent["to_create"]) == (1, 1)  # only ada was updated since
    status = await h.ok("get_sync_status", {"max_age_seconds": 0})
    assert not any(status["totals"].values())
    assert hub.contact_count() == 1 and not hub.stats["write_calls"]


# -- failures: a half-failed batch, a run that stops midway -------------------------------------
async def test_a_partial_batch_delivers_the_rest_and_a_retry_resends_only_the_refused(
    h: Harness, crms: Any
) -> None:
    ghl, hub = crms
    seed_ghl(
        ghl,
        [
            {"firstName": "Ok", "email": "ok1@example.com"},
            {"firstName": "Bad", "email": "bad@nowhere"},  # GoHighLevel kept it; HubSpot refuses it
            {"firstName": "Ok", "email": "ok2@example.com"},
        ],
    )
    r = await sync(h, {"source": GHL, "target": HUB, "idempotency_key": "partial-1"})
    assert r["to_create"] == 3 and r["operations_total"] == 1
    await h.settle()
    assert sorted(hub_contacts(hub)) == ["ok1@example.com", "ok2@example.com"]
    (letter,) = (await h.ok("list_dead_letters"))["entries"]
    assert "bad@nowhere" in letter["reason"] and "other 2 were delivered" in letter["reason"]

    replay = await sync(h, {"source": GHL, "target": HUB, "idempotency_key": "partial-1"})
    assert replay["queued_now"] == 0 and replay["delivery"] == {"dead": 1}
    assert [x["key"] for x in replay["refused"]] == ["bad@nowhere"]

    before = {e: c["updatedAt"] for e, c in hub_contacts(hub).items()}
    writes = hub.stats["write_calls"]["contacts"]
    h.clock.advance(3600)
    await h.ok("retry_failed_sync", {"operation_id": r["operations"][0]})
    await h.settle()
    assert hub.stats["write_calls"]["contacts"] == writes + 1
    assert {e: c["updatedAt"] for e, c in hub_contacts(hub).items()} == before  # delivered ones untouched


async def test_a_run_stopped_midway_resumes_with_the_same_key_without_duplicates(
    h: Harness, crms: Any
) -> None:
    ghl, hub = crms
    seed_ghl(ghl, [{"firstName": f"P{i}", "email": f"p{i}@example.com"} for i in range(10)])

    async def stop_the_source(done: float, total: float | None, message: str | None) -> None:
        ghl.faults.set("error", status=400, path="^/contacts/search")

    args = {"source": GHL, "target": HUB, "page_size": 2, "idempotency_key": "run-1"}
    failed = await h.client.call_tool("sync_records", args, progress_callback=stop_the_source)
    assert failed.is_error and "InvalidRequestError" in getattr(failed.content[0], "text", "")
    ghl.faults.clear()
    stored = (await h.ok("get_sync_status", {"max_age_seconds": 0}))["totals"]["pending"]
    assert 1 <= stored < 5

    r = await sync(h, args)
    assert r["resumed_from_page"] == stored and r["complete"]
    assert (r["pages"], r["seen"], r["to_create"]) == (5, 10, 10)
    assert r["operations_total"] == 5 and r["queued_now"] == 5 - stored
    replay = await sync(h, args)
    assert replay["queued_now"] == 0 and replay["operations"] == r["operations"]

    await h.settle()
    emails = [c["properties"]["email"] for c in hub.contacts()]
    assert len(emails) == 10 and not [e for e, n in Counter(emails).items() if n > 1]
    assert hub.stats["write_calls"] == {"contacts": 5}
    other = await error_of(h, "sync_records", {**args, "page_size": 3})
    assert "IdempotencyError" in other


async def test_bad_arguments(h: Harness) -> None:
    assert "two different connections" in await error_of(h, "sync_records", {"source": GHL, "target": GHL})
    assert "No connection" in await error_of(h, "sync_records", {"source": "nope", "target": HUB})
    assert "match_on" in await error_of(h, "sync_records", {"source": GHL, "target": HUB, "match_on": "name"})
    tool = next(t for t in (await h.client.list_tools()).tools if t.name == "sync_records")
    assert tool.annotations and tool.annotations.idempotent_hint and tool.output_schema
    assert tool.input_schema["properties"]["source"]["description"]


# -- validate_sync across two connections -------------------------------------------------------
async def test_validate_sync_compares_two_connections_and_repairs_with_a_sync(h: Harness, crms: Any) -> None:
    ghl, hub = crms
    a, b, _c = seed_ghl(
        ghl,
        [
            {"firstName": "Amy", "email": "amy@example.com"},
            {"firstName": "Bea", "email": "bea@example.com"},
            {"firstName": "Cal", "email": "cal@example.com"},
        ],
    )
    bea, dan = hub.seed_contacts(
        [{"email": "bea@example.com", "firstname": "B."}, {"email": "dan@example.com", "firstname": "Dan"}]
    )
    args = {"connection": GHL, "compare_to": HUB}
    seen: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)

    result = await h.client.call_tool("validate_sync", args, progress_callback=progress)
    r = result.structured_content
    assert not result.is_error and r is not None and seen
    assert (r["connection"], r["object"], r["checked"], r["in_sync"]) == (GHL, "contact", 3, 0)
    assert sorted(i["detail"] for i in r["missing_remote"]) == [
        "amy@example.com is not in hubspot",
        "cal@example.com is not in hubspot",
    ]
    assert a in {i["local_id"] for i in r["missing_remote"]}
    assert [(i["remote_id"], i["detail"]) for i in r["missing_local"]] == [
        (dan, "dan@example.com is only in hubspot")
    ]
    assert [
        (m["local_id"], m["remote_id"], m["field"], m["local"], m["remote"]) for m in r["mismatches"]
    ] == [(b, bea, "first_name", "Bea", "B.")]
    assert r["repairs"] == [] and any("repair=true" in x for x in r["recommendations"])

    fixed = await h.ok("validate_sync", {**args, "repair": True, "idempotency_key": "x-1"})
    assert [(x["action"], x["replayed"]) for x in fixed["repairs"]] == [("records.upsert", False)]
    again = await h.ok("validate_sync", {**args, "repair": True, "idempotency_key": "x-1"})
    assert again["repairs"] == [] and again["pending"] == 3  # queued, so not drift, nothing twice
    await h.settle()
    after = await h.ok("validate_sync", args)
    assert (after["in_sync"], after["missing_remote"], after["mismatches"]) == (3, [], [])
    assert [i["remote_id"] for i in after["missing_local"]] == [dan]  # a repair never deletes
    assert hub.contact_count() == 4

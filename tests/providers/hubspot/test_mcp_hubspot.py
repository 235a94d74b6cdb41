"""HubSpot through a real MCP client: the agent's tools, the worker and the webhook route against
the HubSpot simulator over loopback HTTP, with a HubSpot-only configuration.

Nothing names the connection unless two are configured: a setup with only `CRM_MCP_HUBSPOT_*`
options must serve every tool. The simulator runs on the harness's clock (`sim.config.clock`), so
token expiry, rate-limit windows and webhook timestamps move with the time the tests move, and
every wait — backoff, a search-limit 429 — is virtual.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from crm_mcp.connectors.provider import SandboxHandle
from crm_mcp.connectors.registry import get_provider
from crm_mcp.providers.hubspot.sandbox import HubSpotSandbox
from crm_mcp.server.webhooks import build_webhook_app
from crm_mcp.settings import Settings, load_settings
from crm_mcp.state.models import InboxEvent, Lead
from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email": "jane@example.com",
    "start_time": "2026-12-01T15:00:00",
    "allow_past": True,  # fixed dates, recorded even once they are past
    "timezone": "America/New_York",
    "title": "Property tour",
    "notes": "Two-bedroom, budget 2000",
}


@pytest.fixture(scope="module")
def hubspot() -> Iterator[SandboxHandle]:
    provider = get_provider("hubspot")
    assert provider.sandbox is not None
    handle = provider.sandbox(0)
    yield handle
    handle.stop()


@pytest.fixture
def sim(hubspot: SandboxHandle) -> Iterator[HubSpotSandbox]:
    hubspot.reset()
    sb: HubSpotSandbox = hubspot.sim
    sb.set_limits(burst_max=100, burst_interval_ms=10_000, daily_limit=250_000, search_per_second=4)
    clock = sb.config.clock
    yield sb
    sb.config.clock = clock


@pytest.fixture
def settings_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings from `<provider prefix>_*` options only, a throwaway database and fast retries."""
    for key in list(os.environ):
        if key.startswith("CRM_MCP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)

    def make(**options: Any) -> Settings:
        return load_settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'test.db'}",
            state_dir=tmp_path / "state",
            sync_backoff_base_seconds=0.01,
            sync_backoff_cap_seconds=0.05,
            poll_interval_seconds=0.01,
            **options,
        )

    return make


def hubspot_options(options: dict[str, Any]) -> dict[str, Any]:
    return {f"hubspot_{k}": v for k, v in options.items()}


@asynccontextmanager
async def hubspot_harness(settings: Settings, sim: HubSpotSandbox) -> AsyncIterator[Harness]:
    async with harness(settings) as h:
        sim.config.clock = h.clock.monotonic  # one clock for the simulator, the tools and the worker
        yield h


@pytest.fixture
async def h(
    hubspot: SandboxHandle, sim: HubSpotSandbox, settings_for: Callable[..., Settings]
) -> AsyncIterator[Harness]:
    async with hubspot_harness(settings_for(**hubspot_options(hubspot.connection_options())), sim) as hh:
        yield hh


def meetings(sim: HubSpotSandbox) -> list[dict[str, Any]]:
    return list(sim.snapshot()["meetings"])


def props(record: dict[str, Any]) -> dict[str, Any]:
    return dict(record["properties"])


async def lead_rows(h: Harness) -> list[Lead]:
    db = await h.runtime.database()
    async with db.sessions() as session:
        return list((await session.execute(select(Lead))).scalars())


# -- a HubSpot-only setup ---------------------------------------------------------------------
async def test_a_hubspot_only_setup_serves_reads_without_naming_the_connection(
    h: Harness, sim: HubSpotSandbox
) -> None:
    assert [c.name for c in h.runtime.connections()] == ["hubspot"]
    jane, john = sim.seed_contacts(
        [
            {"email": "jane@example.com", "firstname": "Jane", "lastname": "Doe", "phone": "+15551230001"},
            {"email": "john@example.com", "firstname": "John", "lastname": "Roe"},
        ]
    )
    found = await h.ok("search_contacts", {"query": "jane"})
    assert [c["id"] for c in found["contacts"]] == [jane]
    by_email = await h.ok("search_contacts", {"email": "john@example.com"})
    assert [c["id"] for c in by_email["contacts"]] == [john]
    everyone = await h.ok("search_contacts", {"limit": 1})
    assert everyone["total"] == 2 and everyone["next_cursor"]
    rest = await h.ok("search_contacts", {"limit": 1, "cursor": everyone["next_cursor"]})
    assert {everyone["contacts"][0]["id"], rest["contacts"][0]["id"]} == {jane, john}
    detail = await h.ok("get_contact", {"contact_id": jane})
    assert detail["contact"]["email"] == "jane@example.com" and detail["contact"]["phone"] == "+15551230001"
    assert detail["notes"] == [] and detail["appointments"] == []
    missing = await h.call("get_contact", {"contact_id": "999999"})
    assert missing.is_error and "NotFoundError" in missing.content[0].text


async def test_check_integration_health_measures_the_hubspot_connection(h: Harness) -> None:
    report = await h.ok("check_integration_health")
    (conn,) = report["connections"]
    assert (conn["connection"], conn["provider"]) == ("hubspot", "hubspot")
    assert conn["credentials_valid"] is True and conn["check_error"] is None
    assert conn["burst_limit"] == 100 and conn["breaker_state"] == "closed"
    assert conn["verdict"] in ("healthy", "degraded")


# -- writes through the worker ----------------------------------------------------------------
async def test_upsert_contact_is_delivered_and_a_duplicate_email_is_the_existing_contact(
    h: Harness, sim: HubSpotSandbox
) -> None:
    (existing,) = sim.seed_contacts([{"email": "bcooper@biglytics.net", "firstname": "Bryan"}])
    queued = await h.ok(
        "upsert_contact",
        {
            "first_name": "Bryan",
            "last_name": "Cooper",
            "email": "BCooper@Biglytics.net",
            "custom_fields": {"crm_mcp_lead_score": 12},
        },
    )
    assert queued["sync_status"] == "pending" and sim.contact_count() == 1
    await h.settle()
    assert sim.contact_count() == 1  # the 409 named the existing contact, which was updated
    assert sim.stats["by_status"]["409"] == 1
    (contact,) = sim.contacts()
    assert contact["id"] == existing
    assert props(contact)["lastname"] == "Cooper" and props(contact)["crm_mcp_lead_score"] == "12"
    again = await h.ok("upsert_contact", {"first_name": "Bryan", "email": "bcooper@biglytics.net"})
    fresh = await h.ok("upsert_contact", {"first_name": "Ada", "email": "ada@example.com"})
    await h.settle()
    assert again["sync_operation_id"] != queued["sync_operation_id"]
    assert fresh["local_id"] != queued["local_id"] and sim.contact_count() == 2
    status = await h.ok("get_sync_status")
    assert status["totals"].get("succeeded") == 3 and not status["totals"].get("dead")


async def test_appointment_lifecycle_becomes_meeting_outcomes(h: Harness, sim: HubSpotSandbox) -> None:
    booked = await h.ok("create_appointment", BOOKING)
    other = await h.ok("create_appointment", {**BOOKING, "start_time": "2026-12-02T10:00:00"})
    await h.settle()
    assert sim.contact_count() == 1
    (contact,) = sim.contacts()
    assert props(contact)["crm_mcp_appointment_status"] and props(contact)["crm_mcp_next_appointment_date"]
    rows = meetings(sim)
    assert len(rows) == 2 and {props(m)["hs_meeting_outcome"] for m in rows} == {"SCHEDULED"}
    assert {props(m)["hs_meeting_title"] for m in rows} == {"Property tour"}
    detail = await h.ok("get_contact", {"contact_id": contact["id"]})
    assert detail["appointments_total"] == 2 and detail["tasks_total"] == 2
    assert any("Two-bedroom" in n["body"] for n in detail["notes"])

    note = await h.ok("add_contact_note", {"contact_id": contact["id"], "body": "Called back, wants a 2B."})
    assert note["sync_status"] == "pending"
    await h.ok(
        "update_appointment_status", {"appointment_id": booked["appointment"]["id"], "action": "cancel"}
    )
    await h.ok(
        "update_appointment_status", {"appointment_id": other["appointment"]["id"], "action": "complete"}
    )
    await h.settle()
    outcomes = sorted(props(m)["hs_meeting_outcome"] for m in meetings(sim))
    assert outcomes == ["CANCELED", "COMPLETED"]
    detail = await h.ok("get_contact", {"contact_id": contact["id"]})
    assert any("wants a 2B" in n["body"] for n in detail["notes"])
    assert {a["status"] for a in detail["appointments"]} == {"cancelled", "completed"}
    assert not (await h.ok("get_sync_status"))["totals"].get("dead")


async def test_qualify_lead_apply_writes_the_score_property(h: Harness, sim: HubSpotSandbox) -> None:
    (cid,) = sim.seed_contacts(
        [{"email": "hot@example.com", "firstname": "Hot", "lastname": "Lead", "phone": "+15551239999"}]
    )
    scored = await h.ok(
        "qualify_lead",
        {
            "contact_id": cid,
            "company_name": "Biglytics",
            "budget": "$5,500/month",
            "timeline": "asap",
            "booked_appointments": 1,
            "source": "referral",
            "notes": "Ready to sign",
            "replies": 3,
            "apply": True,
            "idempotency_key": "qualify-hot-1",
        },
    )
    assert scored["applied"] and scored["sync_status"] == "pending"
    await h.settle()
    (contact,) = sim.contacts()
    assert props(contact)["crm_mcp_lead_score"] == str(scored["score"])
    assert scored["band"] == "hot", scored["factors"]
    (task,) = sim.snapshot()["tasks"]  # the follow-up task; the band's tags have nowhere to go
    assert str(scored["score"]) in props(task)["hs_task_body"]


async def test_validate_sync_finds_hubspot_in_sync(
    h: Harness, sim: HubSpotSandbox, hubspot: SandboxHandle
) -> None:
    await h.ok("create_appointment", BOOKING)
    await h.ok("upsert_contact", {"first_name": "Ada", "email": "ada@example.com"})
    await h.settle()
    appointments = await h.ok("validate_sync", {"object": "appointment"})
    assert (appointments["checked"], appointments["in_sync"]) == (1, 1), appointments["mismatches"]
    assert appointments["mismatches"] == [] and appointments["missing_remote"] == []
    contacts = await h.ok("validate_sync", {"object": "contact"})
    assert contacts["checked"] == contacts["in_sync"] == 1, contacts
    # a meeting deleted by hand in HubSpot is a stale mapping
    meeting_id = meetings(sim)[0]["id"]
    options = hubspot.connection_options()
    async with httpx2.AsyncClient(base_url=options["base_url"]) as http:
        gone = await http.delete(
            f"/crm/v3/objects/meetings/{meeting_id}", headers={"authorization": f"Bearer {options['token']}"}
        )
        assert gone.status_code == 204
    drift = await h.ok("validate_sync", {"object": "appointment"})
    assert [i["remote_id"] for i in drift["stale_mappings"]] == [meeting_id]


# -- schema -----------------------------------------------------------------------------------
async def test_analyze_crm_schema_lists_hubspot_properties(h: Harness) -> None:
    report = await h.ok("analyze_crm_schema")
    fields = {f["key"]: f for f in report["fields"]}
    assert report["connection"] == "hubspot"
    assert fields["crm_mcp_lead_score"]["custom"] and fields["crm_mcp_lead_score"]["type"] == "number"
    assert not fields["email"]["custom"]
    meetings_report = await h.ok("analyze_crm_schema", {"object": "appointment"})
    outcome = next(f for f in meetings_report["fields"] if f["key"] == "hs_meeting_outcome")
    assert "CANCELED" in outcome["options"]


async def test_analyze_crm_schema_maps_gohighlevel_to_hubspot(
    hubspot: SandboxHandle,
    sim: HubSpotSandbox,
    settings_for: Callable[..., Settings],
    ghl_sandbox: tuple[Any, Any],
) -> None:
    ghl = get_provider("gohighlevel")
    _ghl_sim, server = ghl_sandbox
    from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN

    settings = settings_for(
        **hubspot_options(hubspot.connection_options()),
        ghl_token=SANDBOX_TOKEN,
        ghl_location_id=SANDBOX_LOCATION_ID,
        ghl_base_url=server.url,
    )
    async with hubspot_harness(settings, sim) as h:
        assert {c.provider for c in h.runtime.connections()} == {ghl.name, "hubspot"}
        report = await h.ok("analyze_crm_schema", {"connection": "gohighlevel", "compare_to": "hubspot"})
        pairs = {(m["source"], m["target"]): m for m in report["mappings"]}
        score = pairs[("contact.lead_score", "crm_mcp_lead_score")]
        assert score["confidence"] >= 0.9 and "compatible types" in score["reason"]
        email = pairs[("email", "email")]
        assert email["confidence"] == 1.0 and "same name" in email["reason"]
        assert ("firstName", "firstname") in pairs
        assert all(0 < m["confidence"] <= 1 and m["reason"] for m in report["mappings"])
        ambiguous = await h.call("analyze_crm_schema")  # two CRMs: the tool says which to name
        assert ambiguous.is_error and "Several connections" in ambiguous.content[0].text


# -- limits and OAuth -------------------------------------------------------------------------
async def test_a_search_limit_429_is_backed_off(h: Harness, sim: HubSpotSandbox) -> None:
    sim.seed_contacts([{"email": f"s{i}@example.com", "firstname": "Searched"} for i in range(3)])
    sim.set_limits(search_per_second=1)  # HubSpot allows 4/s; the client paces for 4, so it meets 429s
    started = h.clock.now
    for _ in range(6):
        page = await h.ok("search_contacts", {"query": "searched"})
        assert len(page["contacts"]) == 3
    assert sim.stats["rate_limited_by_policy"].get("SECONDLY", 0) >= 2
    assert (h.clock.now - started).total_seconds() >= 1  # waited on the virtual clock, not the wall
    # the search budget's 429s say nothing about HubSpot's health: other calls are not paused
    report = await h.ok("check_integration_health")
    assert report["connections"][0]["breaker_state"] == "closed"
    assert (await h.ok("get_contact", {"contact_id": page["contacts"][0]["id"]}))["contact"]


async def test_oauth_refresh_under_fifty_concurrent_tool_calls_is_one_grant(
    hubspot: SandboxHandle, sim: HubSpotSandbox, settings_for: Callable[..., Settings]
) -> None:
    options = hubspot.oauth_options()
    assert options is not None and "token" not in options
    (cid,) = sim.seed_contacts([{"email": "oauth@example.com", "firstname": "Oauth"}])
    async with hubspot_harness(settings_for(**hubspot_options(options)), sim) as h:

        async def read() -> None:
            got = await h.ok("get_contact", {"contact_id": cid, "include": []})
            assert got["contact"]["id"] == cid

        await asyncio.gather(*(read() for _ in range(50)))
        assert hubspot.token_grants() == 1
        h.clock.advance(31 * 60)  # the 30-minute access token has expired in HubSpot
        await asyncio.gather(*(read() for _ in range(50)))
        assert hubspot.token_grants() == 2
        health = await h.ok("check_integration_health")
        assert health["connections"][0]["credentials_valid"] is True


# -- webhooks ---------------------------------------------------------------------------------
async def test_a_signed_hubspot_webhook_updates_the_local_lead_once(h: Harness, sim: HubSpotSandbox) -> None:
    await h.ok("upsert_contact", {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"})
    await h.settle()
    (contact,) = sim.contacts()
    url = "http://crm-mcp.test/webhooks/hubspot/hubspot"
    event = sim.contact_event(contact["id"], "contact.propertyChange", "firstname", "Janet")
    body, headers = sim.webhook_delivery(url, [event])
    transport = httpx2.ASGITransport(app=build_webhook_app(h.runtime))
    async with httpx2.AsyncClient(transport=transport) as http:
        first = await http.post(url, content=body, headers=headers)
        assert first.status_code == 200 and first.json()["stored"] == 1, first.text
        (lead,) = await lead_rows(h)
        assert lead.first_name == "Janet" and lead.last_name == "Doe"  # applied right after the 200
        again = await http.post(url, content=body, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        foreign = dict(event, portalId=1, eventId=event["eventId"] + 1)
        body2, headers2 = sim.webhook_delivery(url, [foreign])
        refused = await http.post(url, content=body2, headers=headers2)
        assert refused.status_code == 403, refused.text
    db = await h.runtime.database()
    async with db.sessions() as session:
        events = (await session.execute(select(func.count()).select_from(InboxEvent))).scalar_one()
        processed = (
            await session.execute(
                select(func.count()).select_from(InboxEvent).where(InboxEvent.processed_at.is_not(None))
            )
        ).scalar_one()
    assert (events, processed) == (1, 1)
    assert [lead.first_name for lead in await lead_rows(h)] == ["Janet"]
    health = await h.ok("check_integration_health")
    assert health["connections"][0]["last_webhook_at"] is not None

"""Zoho CRM through a real MCP client: the agent's tools, the worker and the webhook route
against the Zoho simulator over loopback HTTP, with a Zoho-only configuration; and the
GoHighLevel <-> HubSpot <-> Zoho field mapping of analyze_crm_schema."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from crm_mcp.connectors.registry import get_provider
from crm_mcp.providers.zoho.sandbox import ZohoSandbox
from crm_mcp.providers.zoho.sandbox_handle import ZohoSandboxHandle
from crm_mcp.server.webhooks import build_webhook_app
from crm_mcp.settings import Settings, load_settings
from crm_mcp.state.models import Lead
from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email": "jane@example.com",
    "start_time": "2026-12-01T15:00:00",
    "allow_past": True,
    "timezone": "America/New_York",
    "title": "Property tour",
}


@pytest.fixture(scope="module")
def zoho_handle() -> Iterator[ZohoSandboxHandle]:
    provider = get_provider("zoho")
    assert provider.sandbox is not None
    handle = provider.sandbox(0)
    assert isinstance(handle, ZohoSandboxHandle)
    yield handle
    handle.stop()


@pytest.fixture
def sim(zoho_handle: ZohoSandboxHandle) -> Iterator[ZohoSandbox]:
    zoho_handle.reset()
    clock = zoho_handle.sim.clock
    yield zoho_handle.sim
    zoho_handle.sim.set_clock(clock)


@pytest.fixture
def settings_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
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


def zoho_options(handle: ZohoSandboxHandle) -> dict[str, Any]:
    return {f"zoho_{k}": v for k, v in handle.connection_options().items()}


@asynccontextmanager
async def zoho_harness(settings: Settings, sim: ZohoSandbox) -> AsyncIterator[Harness]:
    async with harness(settings) as h:
        sim.set_clock(h.clock.monotonic)  # one clock for the simulator, the tools and the worker
        yield h


@pytest.fixture
async def h(
    zoho_handle: ZohoSandboxHandle, sim: ZohoSandbox, settings_for: Callable[..., Settings]
) -> AsyncIterator[Harness]:
    async with zoho_harness(settings_for(**zoho_options(zoho_handle)), sim) as hh:
        yield hh


async def lead_rows(h: Harness) -> list[Lead]:
    db = await h.runtime.database()
    async with db.sessions() as session:
        return list((await session.execute(select(Lead))).scalars())


async def test_a_zoho_only_setup_books_and_reads(h: Harness, sim: ZohoSandbox) -> None:
    assert [c.name for c in h.runtime.connections()] == ["zoho"]
    health = await h.ok("check_integration_health")
    assert health["connections"][0]["credentials_valid"] is True
    queued = await h.ok(
        "upsert_contact", {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
    )
    assert queued["sync_status"] == "pending"
    booked = await h.ok("create_appointment", BOOKING)
    await h.settle()
    leads = sim.store.rows("Leads")
    assert {r["Email"] for r in leads} == {"ada@example.com", "jane@example.com"}
    (event,) = sim.store.rows("Events")
    assert event["Event_Title"] == "Property tour" and event["$se_module"] == "Leads"
    jane = next(r["id"] for r in leads if r["Email"] == "jane@example.com")
    assert event["What_Id"] == {"id": jane}
    found = await h.ok("search_contacts", {"query": "ada@example.com"})
    assert [c["email"] for c in found["contacts"]] == ["ada@example.com"]
    detail = await h.ok("get_contact", {"contact_id": jane})
    assert detail["contact"]["email"] == "jane@example.com" and detail["appointments_total"] == 1
    await h.ok(
        "update_appointment_status", {"appointment_id": booked["appointment"]["id"], "action": "cancel"}
    )
    await h.settle()
    assert sim.store.rows("Events")[0]["Appointment_Status"] == "Cancelled"
    assert not (await h.ok("get_sync_status"))["totals"].get("dead")


async def test_analyze_crm_schema_on_a_zoho_connection(h: Harness) -> None:
    report = await h.ok("analyze_crm_schema")
    fields = {f["key"]: f for f in report["fields"]}
    assert report["connection"] == "zoho"
    assert fields["Lead_Score"]["custom"] and fields["Lead_Score"]["type"] == "integer"
    assert not fields["Email"]["custom"]
    events = await h.ok("analyze_crm_schema", {"object": "appointment"})
    status = next(f for f in events["fields"] if f["key"] == "Appointment_Status")
    assert "Cancelled" in status["options"]


async def test_logical_fields_map_between_gohighlevel_hubspot_and_zoho(
    zoho_handle: ZohoSandboxHandle,
    sim: ZohoSandbox,
    settings_for: Callable[..., Settings],
    ghl_sandbox: tuple[Any, Any],
) -> None:
    from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN

    hubspot = get_provider("hubspot")
    assert hubspot.sandbox is not None
    hs = hubspot.sandbox(0)
    try:
        settings = settings_for(
            **zoho_options(zoho_handle),
            **{f"hubspot_{k}": v for k, v in hs.connection_options().items()},
            ghl_token=SANDBOX_TOKEN,
            ghl_location_id=SANDBOX_LOCATION_ID,
            ghl_base_url=ghl_sandbox[1].url,
        )
        async with zoho_harness(settings, sim) as h:
            assert {c.provider for c in h.runtime.connections()} == {"gohighlevel", "hubspot", "zoho"}
            expected = {
                "gohighlevel": ("contact.lead_score", "Lead_Score"),
                "hubspot": ("crm_mcp_lead_score", "Lead_Score"),
            }
            for source, (score_key, zoho_key) in expected.items():
                report = await h.ok("analyze_crm_schema", {"connection": source, "compare_to": "zoho"})
                pairs = {(m["source"], m["target"]): m for m in report["mappings"]}
                assert pairs[(score_key, zoho_key)]["confidence"] >= 0.9, report["mappings"]
                email = next(m for m in report["mappings"] if m["target"] == "Email")
                assert email["source"].lower() == "email"
            back = await h.ok("analyze_crm_schema", {"connection": "zoho", "compare_to": "hubspot"})
            pairs = {(m["source"], m["target"]) for m in back["mappings"]}
            assert ("Lead_Score", "crm_mcp_lead_score") in pairs and ("Email", "email") in pairs
    finally:
        hs.stop()


async def test_a_zoho_notification_updates_the_local_lead_once(h: Harness, sim: ZohoSandbox) -> None:
    await h.ok("upsert_contact", {"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"})
    await h.settle()
    (record,) = sim.store.rows("Leads")
    record["First_Name"] = "Janet"  # changed in Zoho by a user
    url = "http://crm-mcp.test/webhooks/zoho/zoho"
    body = sim.notification("Leads", "update", [record["id"]])
    transport = httpx2.ASGITransport(app=build_webhook_app(h.runtime))
    async with httpx2.AsyncClient(transport=transport) as http:
        headers = {"Content-Type": "application/json"}
        first = await http.post(url, content=body, headers=headers)
        assert first.status_code == 200 and first.json()["stored"] == 1, first.text
        (lead,) = await lead_rows(h)
        assert lead.first_name == "Janet" and lead.last_name == "Doe"
        again = await http.post(url, content=body, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        forged = sim.notification("Leads", "update", [record["id"]], token="guessed")
        assert (await http.post(url, content=forged, headers=headers)).status_code == 401
        other = sim.notification("Leads", "update", [record["id"]], channel_id="999")
        assert (await http.post(url, content=other, headers=headers)).status_code == 403
    assert [lead.first_name for lead in await lead_rows(h)] == ["Janet"]

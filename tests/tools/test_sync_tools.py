"""Dead letters, retry_failed_sync and the sync resources, through a real MCP client."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import harness
from tests.tools.test_appointments import BOOKING

pytestmark = pytest.mark.anyio


async def test_failing_crm_dead_letters_then_retry_delivers(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url, sync_max_attempts=3)) as h:
        sim.faults.set("error", status=503)
        r = await h.ok("create_appointment", BOOKING)
        op_id = r["sync_operation_id"]
        await h.settle()
        dlq = await h.ok("list_dead_letters")
        assert dlq["count"] == 1
        entry = dlq["entries"][0]
        assert entry["operation_id"] == op_id
        assert entry["attempts"] == 3 and len(entry["error_history"]) == 3
        assert "503" in entry["reason"] or "Unavailable" in entry["reason"]
        status = await h.ok("get_sync_status")
        assert status["totals"]["dead"] == 1 and status["dead_letters"] == 1
        assert status["verdict"] in {"degraded", "unhealthy"}
        assert status["details"] is None  # the summary: why, per connection, only when asked
        details = (await h.ok("get_sync_status", {"detail": "full"}))["details"]
        assert details["recent_failures"]
        breaker = details["connectors"]["gohighlevel"]["breaker"]
        assert breaker["failure_rate"] == 1.0 and breaker["calls_in_window"] >= 1  # visible to the agent

        # resources show the same
        listed = await h.client.read_resource("sync://dead-letter")
        assert json.loads(listed.contents[0].text)["entries"][0]["id"] == entry["id"]
        one = json.loads((await h.client.read_resource(f"sync://dead-letter/{entry['id']}")).contents[0].text)
        assert one["payload"]["contact"]["email"] == "jane@example.com"
        assert op_id in one["how_to_retry"]
        st = json.loads((await h.client.read_resource("sync://status")).contents[0].text)
        assert st["dead_letters"] == 1

        dry = await h.ok("retry_failed_sync", {"operation_id": op_id, "dry_run": True})
        assert dry["count"] == 1 and dry["dry_run"] is True
        assert (await h.ok("get_sync_status"))["totals"]["dead"] == 1  # dry run changed nothing

        sim.faults.clear()
        done = await h.ok("retry_failed_sync", {"operation_id": op_id})
        assert done["count"] == 1
        await h.settle()
        assert len(sim.snapshot()["appointments"]) == 1
        again = await h.ok("retry_failed_sync", {"operation_id": op_id})
        assert again["count"] == 0 and "nothing to do" in again["message"]
        assert (await h.ok("list_dead_letters"))["count"] == 0


async def test_status_answers_the_summary_and_details_when_asked(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        await h.ok("create_appointment", BOOKING)
        await h.settle()
        small = await h.ok("get_sync_status", {"max_age_seconds": 0})
        assert set(small) == {
            "generated_at",
            "verdict",
            "reasons",
            "recommendations",
            "totals",
            "success_rate",
            "oldest_pending_age_s",
            "dead_letters",
            "live_workers",
            "connections",
            "details",
        }
        assert small["details"] is None and small["totals"]["succeeded"] == 1
        assert small["connections"] == {"gohighlevel": "healthy"}

        full = await h.ok("get_sync_status", {"max_age_seconds": 0, "detail": "full"})
        details = full.pop("details")
        assert full.keys() == small.keys() - {"details"} and full["totals"] == small["totals"]
        assert details["connectors"]["gohighlevel"]["health"]["verdict"] == "healthy"
        assert details["attempts_in_window"] == details["successes_in_window"] == 1
        # the details are the sync://status resource's facts, the same names
        resource = json.loads((await h.client.read_resource("sync://status")).contents[0].text)
        assert details.keys() < resource.keys() and full.keys() - {"connections"} < resource.keys()
        assert set(resource["connectors"]) == set(details["connectors"])
        assert len(json.dumps(small)) * 3 < len(json.dumps({**full, "details": details}))


async def test_retry_needs_a_target(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        r = await h.call("retry_failed_sync", {})
        assert r.is_error and "operation_id" in r.content[0].text
        r = await h.call("retry_failed_sync", {"connection": "nope"})
        assert r.is_error and "No connection named" in r.content[0].text


async def test_unknown_dead_letter_resource_is_not_found(ghl_sandbox: Any, settings_factory: Any) -> None:
    from mcp import MCPError

    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        with pytest.raises(MCPError):
            await h.client.read_resource("sync://dead-letter/does-not-exist")


async def test_crm_schema_resource_lists_standard_and_custom_fields(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    from mcp import MCPError

    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        templates = {t.uri_template for t in (await h.client.list_resource_templates()).resource_templates}
        assert "crm://{connection}/schema" in templates
        schema = json.loads((await h.client.read_resource("crm://gohighlevel/schema")).contents[0].text)
        keys = {f["key"]: f for f in schema["contact"]}
        assert keys["contact.appointment_status"]["custom"] is True
        assert any(not f["custom"] for f in schema["contact"])
        assert schema["appointment"]
        with pytest.raises(MCPError):
            await h.client.read_resource("crm://nope/schema")

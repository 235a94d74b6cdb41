"""Health through MCP: no connection says how to add one; the verdict judges a recent window and
recovers when deliveries do; "degraded" always comes with a recommendation; preflight failures
show with their fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crm_mcp.settings import load_settings
from tests.harness import harness

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Jane",
    "email": "jane@example.com",
    "start_time": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT15:00:00"),
    "timezone": "America/New_York",
}


def each_reason_has_advice(report: dict[str, Any]) -> None:
    if report["verdict"] != "healthy":
        assert report["reasons"] and report["recommendations"], report


async def test_no_connection_is_unhealthy_and_says_how_to_add_one(
    settings_factory: Any, tmp_path: Path
) -> None:
    settings_factory("http://127.0.0.1:9")  # clears CRM_MCP_* and moves to tmp_path
    settings = load_settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    async with harness(settings) as h:
        health = await h.ok("check_integration_health", {})
        assert health["verdict"] == "unhealthy" and health["connections"] == []
        assert "No CRM connection is configured" in health["reasons"][0]
        [advice] = health["recommendations"]
        assert "CRM_MCP_" in advice and "crm-mcp config generate" in advice and "[connections." in advice
        status = await h.ok("get_sync_status", {"max_age_seconds": 0})
        assert status["verdict"] == "unhealthy" and "No CRM connection" in " ".join(status["reasons"])


async def test_verdict_recovers_once_the_failures_leave_the_window(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url, sync_max_attempts=20)) as h:
        sim.faults.set("error", status=503, count=6)  # an outage, then the CRM is back
        await h.ok("create_appointment", BOOKING)
        await h.settle(step_s=30)  # delivered in the end: no dead letter
        during = await h.ok("check_integration_health", {})
        [c] = during["connections"]
        assert c["dead_letters"] == 0 and c["success_rate_1h"] is not None and c["success_rate_1h"] < 0.9
        assert c["verdict"] == "degraded" and any("success rate" in r for r in c["reasons"])
        assert any("get_sync_status" in r for r in c["recommendations"])
        status = await h.ok("get_sync_status", {"max_age_seconds": 0})
        assert status["verdict"] == "degraded" and status["recommendations"]

        h.clock.advance(2 * 3600)  # the window (1 h by default) has moved past the outage
        after = await h.ok("check_integration_health", {})
        [c] = after["connections"]
        assert c["success_rate_24h"] is not None and c["success_rate_24h"] < 0.9  # still shown
        assert c["verdict"] == "healthy" and not any("success rate" in r for r in c["reasons"])
        assert after["thresholds"]["window_seconds"] == 3600
        status = await h.ok("get_sync_status", {"max_age_seconds": 0, "detail": "full"})
        assert status["verdict"] == "healthy" and status["details"]["window_seconds"] == 3600


async def test_the_window_is_a_setting(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    settings = settings_factory(server.url, sync_max_attempts=20, health_window_seconds=6 * 3600)
    async with harness(settings) as h:
        sim.faults.set("error", status=503, count=6)
        await h.ok("create_appointment", BOOKING)
        await h.settle(step_s=30)
        h.clock.advance(2 * 3600)  # inside a 6 h window the outage still counts
        [c] = (await h.ok("check_integration_health", {}))["connections"]
        assert c["verdict"] == "degraded" and any("last 6 hours" in r for r in c["reasons"])
        assert c["recommendations"]


async def test_preflight_failure_shows_in_health_with_its_fix(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url, ghl_calendar_id="NoSuchCalendar000001")) as h:
        report = await h.ok("check_integration_health", {})
        [c] = report["connections"]
        assert c["verdict"] == "degraded" and c["credentials_valid"] is True
        assert any("has no calendar NoSuchCalendar000001" in r for r in c["reasons"])
        assert any("CRM_MCP_GHL_CALENDAR_ID" in r and "connections test" in r for r in c["recommendations"])
        each_reason_has_advice(c)
        status = await h.ok("get_sync_status", {"max_age_seconds": 0, "detail": "full"})  # the stored check
        assert status["connections"] == {"gohighlevel": "degraded"}
        assert status["details"]["connectors"]["gohighlevel"]["preflight"]["ok"] is False
        assert any("CRM_MCP_GHL_CALENDAR_ID" in r for r in status["recommendations"])


async def test_every_degraded_reason_comes_with_a_recommendation(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    settings = settings_factory(server.url, health={"max_latency_s": 0.0})  # any latency is "slow"
    async with harness(settings) as h:
        [c] = (await h.ok("check_integration_health", {}))["connections"]
        assert c["verdict"] == "degraded" and "answered in" in c["reasons"][0]
        each_reason_has_advice(c)
        assert any("slow" in r for r in c["recommendations"])

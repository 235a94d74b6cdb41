"""check_integration_health through MCP against the sandbox: measured checks and verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tools.test_appointments import BOOKING
from tests.tools.test_crm_queries import error_text, toolbox

pytestmark = pytest.mark.anyio


async def test_healthy_connection_reports_measurements(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok("check_integration_health", {})
        assert r["verdict"] == "healthy" and r["thresholds"]["max_latency_s"] == 3.0
        [c] = r["connections"]
        assert c["connection"] == "gohighlevel" and c["credentials_valid"] is True
        assert c["latency_ms"] is not None and c["latency_ms"] >= 0
        assert c["breaker_state"] == "closed"
        assert c["burst_limit"] == 100 and 0 < c["burst_remaining"] <= 100
        assert c["daily_remaining"] is not None and c["daily_limit"] == 200_000
        assert c["pending"] == 0 and c["dead_letters"] == 0 and c["reasons"] == []
        assert c["last_webhook_at"] is None and any("webhook" in x for x in c["recommendations"])


async def test_rejected_token_is_unhealthy_with_reconnect_advice(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url, ghl_token="revoked-canary-token-42")) as h:
        r = await h.ok("check_integration_health", {"connection": "gohighlevel"})
        [c] = r["connections"]
        assert r["verdict"] == c["verdict"] == "unhealthy"
        assert c["credentials_valid"] is False and "401" in c["check_error"]
        assert any("Reconnect" in x for x in c["recommendations"])
        assert "revoked-canary-token-42" not in str(r)


async def test_failures_dead_letters_and_backlog_degrade(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url, sync_max_attempts=2)) as h:
        sim.faults.set("error", status=503)
        await h.ok("create_appointment", BOOKING)
        await h.settle()
        sim.faults.clear()
        await h.ok("create_appointment", {**BOOKING, "email": "queued@example.com"})  # stays pending
        r = await h.ok("check_integration_health", {})
        [c] = r["connections"]
        assert c["dead_letters"] == 1 and c["pending"] == 1
        assert c["success_rate_1h"] == 0.0 and c["attempts_24h"] == 2
        text = " ".join(c["reasons"])
        assert "failed for good" in text and "success rate" in text.lower()
        # the 503 storm opened the breaker: the check call itself is refused, so it is unhealthy
        assert c["breaker_state"] == "open" and c["verdict"] == "unhealthy"
        assert "CircuitOpen" in c["check_error"] and "circuit breaker is open" in text
        assert any("list_dead_letters" in x for x in c["recommendations"])


async def test_thresholds_come_from_settings_and_webhooks_count(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(
        settings_factory(server.url, health={"max_latency_s": 0.0, "max_dead_letters": 50})
    ) as h:
        from crm_mcp.state.models import InboxEvent

        db = await h.runtime.database()
        async with db.begin_write() as s:
            s.add(
                InboxEvent(
                    provider="gohighlevel",
                    connection="gohighlevel",
                    event_id="e1",
                    event_type="ContactCreate",
                    verified=True,
                    payload={},
                    received_at=h.clock(),
                )
            )
        r = await h.ok("check_integration_health", {})
        [c] = r["connections"]
        assert c["verdict"] == "degraded" and "answered in" in c["reasons"][0]
        assert c["last_webhook_at"] is not None
        assert not any("No webhook" in x for x in c["recommendations"])


async def test_unknown_connection_is_a_tool_error(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        assert "No connection named" in error_text(
            await h.call("check_integration_health", {"connection": "x"})
        )

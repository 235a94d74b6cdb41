"""Preflight against the sandboxes over real HTTP: each bad setting fails the right check, and a
write to that connection still queues but says what is wrong and how to fix it (through MCP)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from crm_mcp.background import run_background_checks
from crm_mcp.preflight import last_checks, run_preflight
from crm_mcp.runtime import Runtime
from tests.harness import harness

pytestmark = pytest.mark.anyio

BOOKING = {  # a month ahead: neither past nor far future
    "first_name": "Jane",
    "email": "jane@example.com",
    "start_time": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT15:00:00"),
    "timezone": "America/New_York",
}


def _by_name(check: Any) -> dict[str, Any]:
    return {c.name: c for c in check.checks}


async def test_a_good_connection_passes_and_writes_carry_no_warning(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        [check] = await run_preflight(h.runtime)
        assert check.ok and check.failure is None and check.failing_since is None
        assert {c.name: c.ok for c in check.checks} == {"token": True, "tenant": True, "calendar": True}
        result = await h.ok("create_appointment", BOOKING)
        assert result["warning"] is None and result["sync_status"] == "pending"


@pytest.mark.parametrize(
    ("setting", "failed", "said", "fix"),
    [
        ({"ghl_token": "revoked-canary-token-42"}, "token", "rejected its token", "CRM_MCP_GHL_TOKEN"),
        ({"ghl_location_id": "NoSuchLocation000001"}, "tenant", "location", "CRM_MCP_GHL_LOCATION_ID"),
        (
            {"ghl_calendar_id": "NoSuchCalendar000001"},
            "calendar",
            "has no calendar",
            "CRM_MCP_GHL_CALENDAR_ID",
        ),
    ],
)
async def test_each_bad_setting_fails_its_check_and_the_write_warns(
    ghl_sandbox: Any, settings_factory: Any, setting: dict[str, str], failed: str, said: str, fix: str
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url, **setting)) as h:
        [check] = await run_preflight(h.runtime)
        assert not check.ok and check.failure is not None
        assert check.failure.name == failed and said in check.failure.detail
        assert check.failure.fix and fix in check.failure.fix
        if failed == "token":  # nothing after a refused token is checked
            assert _by_name(check)["tenant"].ok is None

        result = await h.ok("create_appointment", BOOKING)  # still queued: nothing is lost
        assert result["sync_status"] == "pending" and result["sync_operation_id"]
        warning = result["warning"]
        assert warning.startswith("Queued, but gohighlevel ") and said in warning
        assert "deliveries will fail until it is fixed" in warning and fix in warning
        assert "revoked-canary-token-42" not in str(result)


async def test_a_failure_keeps_its_first_time_and_a_pass_clears_it(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        sim.faults.set("error", status=401)
        [first] = await run_preflight(h.runtime)
        h.clock.advance(600)
        [second] = await run_preflight(h.runtime)
        assert first.failing_since == second.failing_since == first.checked_at
        sim.faults.clear()
        [fixed] = await run_preflight(h.runtime)
        assert fixed.ok and fixed.failing_since is None
        assert (await h.ok("create_appointment", BOOKING))["warning"] is None


async def test_another_process_reads_the_stored_checks(ghl_sandbox: Any, settings_factory: Any) -> None:
    """A check run by `crm-mcp connections test` reaches the server through the database."""
    _sim, server = ghl_sandbox
    settings = settings_factory(server.url, ghl_calendar_id="NoSuchCalendar000001")
    async with harness(settings) as h:
        await run_preflight(h.runtime)
        other = Runtime(settings)
        try:
            stored = (await last_checks(other))["gohighlevel"]
        finally:
            await other.aclose()
        assert not stored.ok and stored.failure is not None and stored.failure.name == "calendar"


async def test_an_unreachable_crm_is_not_called_a_bad_token(settings_factory: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with harness(settings_factory(f"http://127.0.0.1:{port}"), max_attempts=1) as h:
        [check] = await run_preflight(h.runtime)
        assert check.failure is not None and check.failure.name == "reachable"
        warning = (await h.ok("create_appointment", BOOKING))["warning"]
        assert "could not be reached" in warning and "retries" in warning


async def test_background_loop_checks_at_start_and_publishes_breakers(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    from crm_mcp.state.connection_state import load_guards

    _sim, server = ghl_sandbox
    settings = settings_factory(server.url, ghl_token="revoked-canary-token-42")
    rt = Runtime(settings)
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(run_background_checks(rt, stop=stop, publish_every_s=0.01))
        db = await rt.database()
        guards: dict[str, Any] = {}
        for _ in range(1000):  # until the first pass has checked and published
            async with db.sessions() as session:
                guards = await load_guards(session, since=rt.clock().replace(year=2000))
            if "gohighlevel" in guards:
                break
            await asyncio.sleep(0.01)
        assert guards["gohighlevel"].snapshot["breaker"]["state"] == "closed"
        stop.set()
        await task
        async with db.sessions() as session:  # a clean stop withdraws this process's state
            assert await load_guards(session, since=rt.clock().replace(year=2000)) == {}
    finally:
        await rt.aclose()
    assert not (await _fresh_checks(settings))["gohighlevel"].ok


async def _fresh_checks(settings: Any) -> Any:
    rt = Runtime(settings)
    try:
        return await last_checks(rt)
    finally:
        await rt.aclose()


async def test_serve_answers_initialize_before_a_slow_crm_answers_its_check(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Path
) -> None:
    """The preflight runs in the background: a CRM that takes 20 s to answer delays nothing."""
    sim, server = ghl_sandbox
    sim.faults.set("slow", delay_s=20)
    settings = settings_factory(server.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        CRM_MCP_DATABASE_URL=settings.database_url,
        CRM_MCP_STATE_DIR=str(tmp_path / "state"),
        CRM_MCP_GHL_TOKEN="sandbox-ghl-token",
        CRM_MCP_GHL_LOCATION_ID=settings.provider_settings("gohighlevel").location_id,
        CRM_MCP_GHL_BASE_URL=server.url,
    )
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "crm_mcp", "serve", "--no-worker"], env=env, cwd=str(tmp_path)
    )
    async with Client(params, cache=None) as client:
        tools = await client.list_tools()
        assert any(t.name == "check_integration_health" for t in tools.tools)
        # the check is still waiting on the slow CRM: nothing stored yet, yet we are talking
        assert "gohighlevel" not in await _fresh_checks(settings)
    sim.faults.clear()


async def test_other_write_tools_carry_the_warning_too(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url, ghl_token="revoked-canary-token-42")) as h:
        await run_preflight(h.runtime)
        upserted = await h.ok("upsert_contact", {"first_name": "Ann", "email": "ann@example.com"})
        assert upserted["sync_operation_id"] and "rejected its token" in upserted["warning"]
        # reads are not writes: a read result has no warning to carry
        health = await h.ok("check_integration_health", {})
        assert "warning" not in health


async def test_readyz_names_a_connection_whose_token_was_revoked(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    """Deep readiness: a token the CRM refuses makes /readyz 503 and say which connection."""
    from crm_mcp.server.routes import readyz_for

    _sim, server = ghl_sandbox
    for token, ready in (("sandbox-ghl-token", True), ("revoked-canary-token-42", False)):
        async with harness(settings_factory(server.url, ghl_token=token)) as h:
            await run_preflight(h.runtime)
            answer = await readyz_for(h.runtime)(None)  # type: ignore[arg-type]
            body = json.loads(answer.body)
            if ready:
                assert body["checks"]["connections"] == "ok"
            else:
                assert answer.status_code == 503 and not body["ready"]
                assert body["checks"]["connections"].startswith("not ready: gohighlevel (token: ")

"""`crm-mcp connections list|test` and `crm-mcp status [--watch]` through the real entry point,
against the sandbox over HTTP: the CLI shows the server's state, not its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crm_mcp.background import publish_guards
from crm_mcp.errors import CRMError
from tests.harness import harness


def cli_env(settings: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    ghl = settings.provider_settings("gohighlevel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        CRM_MCP_DATABASE_URL=settings.database_url,
        CRM_MCP_STATE_DIR=str(tmp_path / "state"),
        CRM_MCP_GHL_TOKEN=ghl.token.get_secret_value(),
        CRM_MCP_GHL_LOCATION_ID=ghl.location_id,
        CRM_MCP_GHL_CALENDAR_ID=ghl.calendar_id,
        CRM_MCP_GHL_BASE_URL=ghl.base_url,
        CRM_MCP_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def crm_mcp(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_mcp", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_connections_test_prints_one_line_per_check_and_fails_on_a_bad_calendar(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Path
) -> None:
    _sim, server = ghl_sandbox
    env = cli_env(settings_factory(server.url), tmp_path)
    good = crm_mcp(env, tmp_path, "connections", "test")
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "ok", "ok"]
    assert "token" in lines[0] and "location" in lines[1] and "calendar" in lines[2]

    bad = crm_mcp({**env, "CRM_MCP_GHL_CALENDAR_ID": "NoSuchCalendar000001"}, tmp_path, "connections", "test")
    assert bad.returncode == 1
    assert "FAIL" in bad.stdout and "has no calendar NoSuchCalendar000001" in bad.stdout
    assert "fix: set CRM_MCP_GHL_CALENDAR_ID" in bad.stdout

    listed = crm_mcp(env, tmp_path, "connections", "list", "--json")
    [row] = json.loads(listed.stdout)["connections"]
    assert row["name"] == row["provider"] == "gohighlevel" and "calendars" in row["capabilities"]
    assert row["last_check"]["ok"] is False and "has no calendar" in row["problem"]
    table = crm_mcp({**env, "COLUMNS": "200"}, tmp_path, "connections", "list")
    assert "gohighlevel" in table.stdout and "FAILED" in table.stdout


def test_connections_without_any_connection_say_how_to_add_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env["CRM_MCP_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    out = crm_mcp(env, tmp_path, "connections", "test")
    assert out.returncode == 1 and "No CRM connection is configured" in out.stdout
    assert "crm-mcp config generate" in out.stdout


@pytest.mark.anyio
async def test_status_reads_the_servers_breakers_and_names_its_database(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Path
) -> None:
    sim, server = ghl_sandbox
    settings = settings_factory(server.url, sync_max_attempts=2)
    async with harness(settings) as h:  # the "server": its deliveries open its breaker
        sim.faults.set("error", status=503)
        connector = h.runtime.connector("gohighlevel")
        for _ in range(30):  # the server's calls fail until its breaker opens
            with contextlib.suppress(CRMError):
                await connector.ping()
            if connector.snapshot()["breaker"]["state"] == "open":
                break
        assert connector.snapshot()["breaker"]["state"] == "open"
        await publish_guards(h.runtime, "server-host:4242:abcd1234")
    sim.faults.clear()

    out = crm_mcp(cli_env(settings, tmp_path), tmp_path, "status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["database"] == settings.database_url
    ghl = status["connectors"]["gohighlevel"]
    assert ghl["breaker"]["state"] == "open" and ghl["published_by"] == "server-host:4242:abcd1234"
    assert status["verdict"] != "healthy"
    assert any("circuit breaker is open" in r for r in status["reasons"]) and status["recommendations"]
    text = crm_mcp({**cli_env(settings, tmp_path), "COLUMNS": "200"}, tmp_path, "status")
    assert "database: " + settings.database_url in text.stdout and "open" in text.stdout
    assert "pid 4242" in text.stdout


def test_status_without_a_running_server_says_so(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Path
) -> None:
    _sim, server = ghl_sandbox
    out = crm_mcp(cli_env(settings_factory(server.url), tmp_path), tmp_path, "status", "--json")
    ghl = json.loads(out.stdout)["connectors"]["gohighlevel"]
    assert ghl["published_by"] is None and "no server or worker" in ghl["note"]
    assert "breaker" not in ghl  # not the CLI's own, never-used breaker


def test_status_watch_redraws_until_ctrl_c(ghl_sandbox: Any, settings_factory: Any, tmp_path: Path) -> None:
    _sim, server = ghl_sandbox
    env = cli_env(settings_factory(server.url), tmp_path, TTY_COMPATIBLE="1", TTY_INTERACTIVE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_mcp", "status", "--watch", "--interval", "0.2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + 60
    while seen.count(b"Sync status") < 3 and time.monotonic() < deadline:
        seen += proc.stdout.read() or b""
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    seen += rest or b""
    assert seen.count(b"Sync status") >= 3, seen[-500:]
    assert b"every 0.2 s, Ctrl-C to stop" in seen
    assert proc.returncode in (0, 130) and b"Traceback" not in err

"""`crm-mcp calls sync` through the real entry point, against the RingCentral and Zoho simulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crm_mcp.connectors.registry import get_provider


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[Any, Any]]:
    phones = get_provider("ringcentral").sandbox(0)  # type: ignore[misc]
    zoho = get_provider("zoho").sandbox(0)  # type: ignore[misc]
    phones.sim.seed_calls(30, 2, pending=1)
    phones.sim.set_limits(all=10_000)
    yield phones, zoho
    phones.stop()
    zoho.stop()


def run(tmp_path: Path, sims: tuple[Any, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    for prefix, handle in zip(("RINGCENTRAL", "ZOHO"), sims, strict=True):
        env.update({f"CRM_MCP_{prefix}_{k.upper()}": str(v) for k, v in handle.connection_options().items()})
    env["CRM_MCP_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    env["CRM_MCP_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "crm_mcp", "calls", "sync", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_calls_sync_logs_each_call_once_and_says_what_it_did(tmp_path: Path, sims: tuple[Any, Any]) -> None:
    _phones, zoho = sims
    since = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    dry = run(tmp_path, sims, "--since", since, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert len(plan["plan"]) == 30 and plan["queued"] == 0
    assert zoho.sim.store.tables["Calls"] == {}

    first = run(tmp_path, sims, "--since", since, "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["queued"] == 30 and result["status"] == {"logged": 30}
    assert len(zoho.sim.store.tables["Calls"]) == 30

    again = run(tmp_path, sims, "--since", since)
    assert again.returncode == 0, again.stderr
    assert "0 new, 30 already logged" in " ".join(again.stdout.split())
    assert len(zoho.sim.store.tables["Calls"]) == 30


def test_a_time_without_a_zone_is_refused_in_one_line(tmp_path: Path, sims: tuple[Any, Any]) -> None:
    out = run(tmp_path, sims, "--since", "2026-12-01T00:00:00")
    assert out.returncode == 2
    assert "has no time zone" in out.stderr and "Traceback" not in out.stderr

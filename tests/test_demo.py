"""`crm-mcp demo` is the README's first command: it must run to its summary line and exit 0, touring
every provider's simulator."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env["COLUMNS"] = "200"
    out = subprocess.run(
        [sys.executable, "-m", "crm_mcp", "demo"], env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Summary:" in out.stdout
    # three on the default connection, one on each connection by name, one dead then recovered
    assert "7 appointments in 3 CRM(s) (gohighlevel: 5, hubspot: 1, zoho: 1)" in out.stdout
    assert "0 still dead" in out.stdout
    assert "UpstreamUnavailableError" in out.stdout  # the dead letter was shown with its cause
    assert "In the GoHighLevel sandbox" in out.stdout and "In the HubSpot sandbox" in out.stdout

"""`crm-mcp sandbox --fail ... --rate ...` through the real entry point: the simulators come up
failing as asked, print the `_sandbox/faults` body shape, and recover on DELETE."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env["CRM_MCP_STATE_DIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_mcp", "sandbox", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Ctrl-C" in line:
            return proc, lines
    proc.kill()
    raise AssertionError(f"the sandbox did not come up: {lines} {proc.stderr.read() if proc.stderr else ''}")


def test_sandbox_fail_rate_injects_and_delete_recovers(tmp_path: Path) -> None:
    proc, lines = _start(tmp_path, "--fail", "503", "--rate", "1")
    try:
        text = "\n".join(lines)
        values = dict(re.findall(r"^(CRM_MCP_GHL_[A-Z_]+)=(\S+)$", text, re.M))
        url, token = values["CRM_MCP_GHL_BASE_URL"], values["CRM_MCP_GHL_TOKEN"]
        # the shape of the faults body is printed, and the rule in force
        assert '"kind": "error", "status": 503' in text and "probability" in text and "count" in text
        _, body = _get(f"{url}/_sandbox/faults")
        (rule,) = json.loads(body)["faults"]
        assert (rule["kind"], rule["status"], rule["probability"]) == ("error", 503, 1.0)
        auth = {"Authorization": f"Bearer {token}", "Version": "2021-07-28"}
        location = values["CRM_MCP_GHL_LOCATION_ID"]
        assert _get(f"{url}/locations/{location}", auth)[0] == 503
        assert _get(f"{url}/_sandbox/faults", method="DELETE")[0] == 200
        assert _get(f"{url}/locations/{location}", auth)[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--fail", "teapot"], "give an HTTP status"), (["--fail", "503", "--rate", "3"], "between 0 and 1")],
)
def test_bad_fail_flags_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    out = subprocess.run(
        [sys.executable, "-m", "crm_mcp", "sandbox", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and needle in out.stderr and len(out.stderr.strip().splitlines()) == 1

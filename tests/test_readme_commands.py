"""The README's copy-paste commands work on a fresh checkout: `make install`, then every MCP
Inspector line of "Check it with the MCP Inspector" run as written (bash, in the checkout).

The checkout is the repository's files as git sees them (tracked plus untracked-but-not-ignored:
on CI, exactly a clone; locally, the working tree under review) copied to an empty directory, so
nothing from this machine's .venv, caches or ignored files can help. Slow (a venv and an npx
download), so marked slow; CI runs it. Needs node/npx: skipped without them, except under CI=true,
where Node 20 is installed and a skip would hide a broken README.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SECTION = "### Check it with the MCP Inspector"


def _need_npx() -> None:
    if shutil.which("npx") is None or shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "npx/node is not installed, but CI has Node 20: the README's Inspector lines went untested"
            )
        pytest.skip("npx/node not installed: the README's Inspector commands need Node.js")


def readme_commands(readme: str) -> tuple[list[str], str | None]:
    """The Inspector command lines of the README section (continuations joined), and the server
    command its HTTP lines say to start first."""
    section = readme[readme.index(SECTION) :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no ```sh block under {SECTION!r}"
    text = block.group(1).replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    commands = [line for line in lines if "@modelcontextprotocol/inspector" in line]
    server = re.search(r"start `([^`]*serve[^`]*--transport http[^`]*)` first", block.group(1))
    return commands, server.group(1) if server else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _fresh_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _bash(command: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_MCP_", "VIRTUAL_ENV"))}
    # each line runs with a fresh HOME, as written; one npm cache for all of them (npm reads
    # npm_config_cache before HOME) saves downloading the Inspector five times
    env["npm_config_cache"] = str(cwd.parent / "npm-cache")
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _result(out: subprocess.CompletedProcess[str], command: str) -> dict:
    assert out.returncode == 0, (
        f"{command}\nexit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    )
    start = out.stdout.index("{")
    return dict(json.loads(out.stdout[start:]))


def test_readme_parses_into_inspector_commands() -> None:
    commands, server = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(commands) >= 4 and server is not None
    for command in commands:
        # a bare `crm-mcp` is not on PATH after `make install`
        assert "--cli crm-mcp" not in command and not re.search(r"(^|\s)crm-mcp\s", command), command
    assert server.startswith(".venv/bin/crm-mcp ")


def test_readme_inspector_commands_work_on_a_fresh_checkout(tmp_path: Path) -> None:
    _need_npx()
    checkout = tmp_path / "crm-mcp"
    _fresh_checkout(checkout)
    installed = subprocess.run(["make", "install"], cwd=checkout, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    assert (checkout / ".venv" / "bin" / "crm-mcp").is_file()

    commands, server_cmd = readme_commands((checkout / "README.md").read_text(encoding="utf-8"))
    stdio = [c for c in commands if "--transport http" not in c]
    http = [c for c in commands if "--transport http" in c]
    for command in stdio:
        result = _result(_bash(command, checkout), command)
        if "tools/list" in command:
            assert {t["name"] for t in result["tools"]} >= {"create_appointment", "get_sync_status"}
        elif "resources/list" in command:
            assert any(r["uri"] == "sync://status" for r in result["resources"])
        elif "tools/call" in command:
            assert result.get("isError") is False, result

    assert server_cmd is not None
    port = 8000
    if not _port_free(port):  # a shared machine: the same commands on another port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server_cmd = server_cmd.replace("--port 8000", f"--port {port}")
        http = [c.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for c in http]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    server = subprocess.Popen(
        ["bash", "-c", f"exec {server_cmd}"],
        cwd=checkout,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _port_free(port):
            assert server.poll() is None, "the README's HTTP server command exited"
            assert time.monotonic() < deadline, "the README's HTTP server did not listen within 60 s"
            time.sleep(0.2)
        for command in http:
            result = _result(_bash(command, checkout), command)
            if "tools/list" in command:
                assert result["tools"]
            elif "resources/read" in command:
                assert result["contents"][0]["uri"] == "sync://status"
    finally:
        server.terminate()
        server.wait(timeout=20)

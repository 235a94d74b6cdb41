"""Shared helpers for the benchmarks: spawn a stdio MCP server and time JSON-RPC round trips."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = "2025-06-18"


def crm_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        {
            "CRM_MCP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
            "CRM_MCP_GHL_TOKEN": "bench-token-not-used",
            "CRM_MCP_GHL_LOCATION_ID": "BenchLoc000000000001",
            "CRM_MCP_GHL_BASE_URL": "http://127.0.0.1:9",
            "CRM_MCP_LOG_LEVEL": "WARNING",
        }
    )
    return env


def commands() -> dict[str, tuple[list[str], dict[str, str]]]:
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-"))
    return {
        "bare": ([sys.executable, str(ROOT / "bench" / "bare_server.py")], dict(os.environ)),
        "crm-mcp": ([sys.executable, "-m", "crm_mcp", "serve"], crm_env(tmp)),
    }


class StdioServer:
    """A spawned stdio MCP server spoken to with newline-delimited JSON-RPC."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._id = 0

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._id += 1
        msg = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or {}}
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited during {method}")
            reply = json.loads(line)
            if reply.get("id") == self._id:
                return reply

    def notify(self, method: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method}) + "\n")
        self.proc.stdin.flush()

    def initialize(self) -> float:
        self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        )
        elapsed = time.perf_counter() - self.started
        self.notify("notifications/initialized")
        return elapsed

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def median(values: list[float]) -> float:
    return statistics.median(values)


class ChildServer:
    """A simulator in a child process of the benchmark, so that it shares neither the GIL nor the
    event loop of the engine being measured. `argv(port)` starts it on a free loopback port; it is
    ready once `probe` (a path) answers JSON."""

    def __init__(self, argv: list[str], probe: str, *, timeout_s: float = 30.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, *[a.replace("{port}", str(self.port)) for a in argv]])
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.get(probe)
                return
            except OSError:  # URLError and connection refused while it starts
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the simulator process did not start") from None
                time.sleep(0.05)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

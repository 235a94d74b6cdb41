"""The real entry point: `crm-mcp serve` over stdio, streamable HTTP and SSE, driven by MCP clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio

EXPECTED_TOOLS = {
    "create_appointment",
    "update_appointment_status",
    "retry_failed_sync",
    "get_sync_status",
    "list_dead_letters",
    "sync_records",
}


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env["CRM_MCP_STATE_DIR"] = str(tmp_path / "state")
    env["CRM_MCP_POLL_INTERVAL_SECONDS"] = "0.05"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    args: list[str], env: dict[str, str], port: int, *, host: str = "127.0.0.1"
) -> Iterator[subprocess.Popen[bytes]]:
    with serving_command(
        [sys.executable, "-m", "crm_mcp", "serve", *args, "--port", str(port)], env, port, host=host
    ) as p:
        yield p


@contextmanager
def serving_command(
    argv: list[str], env: dict[str, str], port: int, *, host: str = "127.0.0.1"
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server command until it accepts connections on `host:port`; stop it afterwards."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.stderr else "server exited"
                    ) from None
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def wait_delivered(client: Client, count: int, within_s: float = 30) -> dict[str, Any]:
    with anyio.fail_after(within_s):
        while True:
            status = (await client.call_tool("get_sync_status", {})).structured_content or {}
            if status.get("totals", {}).get("succeeded", 0) >= count:
                return status
            await anyio.sleep(0.1)


async def test_stdio_serve_sandbox_books_and_delivers(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "crm_mcp", "serve", "--sandbox"], env=clean_env(tmp_path)
    )
    async with Client(params, cache=None) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names >= EXPECTED_TOOLS
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"sync://status", "sync://dead-letter"} <= resources
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "sync://dead-letter/{entry_id}" in templates
        r = await client.call_tool(
            "create_appointment",
            {
                "first_name": "Stdio",
                "email": "stdio@example.com",
                "start_time": "2026-12-03T15:00:00Z",
                "allow_past": True,
            },
        )
        assert not r.is_error, r.content
        status = await wait_delivered(client, 1)
        assert status["totals"]["succeeded"] == 1


async def test_http_transport_serves_tools_and_health(tmp_path: Path) -> None:
    import httpx2

    port = free_port()
    with serving(["--transport", "http", "--sandbox"], clean_env(tmp_path), port):
        async with httpx2.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).json() == {"status": "ok"}
            metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert "crm_mcp_dead_letters" in metrics.text
        async with Client(f"http://127.0.0.1:{port}/mcp", cache=None) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names >= EXPECTED_TOOLS
            r = await client.call_tool(
                "create_appointment",
                {
                    "first_name": "Http",
                    "phone": "+15550001111",
                    "start_time": "2026-12-03T16:00:00Z",
                    "allow_past": True,
                },
            )
            assert not r.is_error, r.content
            await wait_delivered(client, 1)
        async with httpx2.AsyncClient() as http:
            ready = await http.get(f"http://127.0.0.1:{port}/readyz")
            assert ready.status_code == 200, ready.text


async def test_sse_transport_serves_tools(tmp_path: Path) -> None:
    from mcp.client.sse import sse_client

    port = free_port()
    with serving(["--transport", "sse", "--sandbox"], clean_env(tmp_path), port):
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse"), cache=None) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names >= EXPECTED_TOOLS


@pytest.mark.parametrize("token", [None, "", "   ", "short-token"])
def test_http_beyond_loopback_requires_a_token(tmp_path: Path, token: str | None) -> None:
    """No token, an empty one (it once started with no auth at all) or a short one: refused."""
    env = clean_env(tmp_path)
    if token is not None:
        env["CRM_MCP_HTTP_TOKEN"] = token
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "crm_mcp",
            "serve",
            "--transport",
            "http",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert "CRM_MCP_HTTP_TOKEN" in out.stderr


def test_build_server_refuses_an_empty_token(tmp_path: Path) -> None:
    from crm_mcp.errors import ConfigurationError
    from crm_mcp.runtime import Runtime
    from crm_mcp.server.app import build_server
    from crm_mcp.settings import load_settings

    rt = Runtime(load_settings(_env_file=None, state_dir=tmp_path))
    with pytest.raises(ConfigurationError):
        build_server(rt, http_token="")


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crm_mcp", "--help"], capture_output=True, text=True, check=True
    )
    for cmd in ("serve", "worker", "sandbox", "demo", "status", "dlq", "config", "db"):
        assert cmd in out.stdout


async def test_signed_webhook_is_received_by_serve_http(tmp_path: Path) -> None:
    """A GoHighLevel event signed with the configured key is stored once; a forged one is refused."""
    import httpx2

    from crm_mcp.providers.gohighlevel.sandbox.signer import GHLWebhookSigner, ghl_event_body

    signer = GHLWebhookSigner(rsa_bits=2048)
    env = clean_env(tmp_path)
    env["CRM_MCP_GHL_WEBHOOK_PUBLIC_KEY"] = signer.rsa_public_pem
    port = free_port()
    body = ghl_event_body(
        {
            "type": "ContactCreate",
            "locationId": "SbxLoc00000000000001",
            "id": "WebhookContact000001",
            "email": "hook@example.com",
            "firstName": "Hook",
        },
        timestamp=datetime.now(UTC),
        webhook_id="evt-1",
    )
    url = f"http://127.0.0.1:{port}/webhooks/gohighlevel/gohighlevel"
    with serving(["--transport", "http", "--sandbox"], env, port):
        async with httpx2.AsyncClient() as http:
            first = await http.post(url, content=body, headers=signer.headers(body, ed25519_sig=False))
            assert first.status_code == 200, first.text
            again = await http.post(url, content=body, headers=signer.headers(body, ed25519_sig=False))
            assert again.status_code == 200 and again.json().get("duplicate") is True
            forged = await http.post(
                url, content=body.replace(b"Hook", b"Evil"), headers=signer.headers(body, ed25519_sig=False)
            )
            assert forged.status_code == 401

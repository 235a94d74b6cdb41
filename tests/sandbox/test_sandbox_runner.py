"""SandboxServer: real loopback HTTP from sync and async code, fast round trips, clean shutdown."""

from __future__ import annotations

import time

import httpx2
import pytest

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.sandbox.runner import SandboxServer

HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKEN}", "Version": "2021-07-28"}


@pytest.mark.anyio
async def test_async_context_manager_serves_on_an_ephemeral_loopback_port() -> None:
    sandbox = GHLSandbox()
    async with SandboxServer(sandbox.app) as server:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        async with httpx2.AsyncClient(base_url=server.url, headers=HEADERS) as client:
            r = await client.get(f"/locations/{SANDBOX_LOCATION_ID}")
        assert r.status_code == 200
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(server.url, timeout=1)


def test_round_trips_are_not_held_back_by_nagle() -> None:
    """Benchmarks measure the sync engine, so a request must cost about a millisecond, not 40."""
    sandbox, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=1_000))
    try:
        with httpx2.Client(base_url=server.url, headers=HEADERS) as client:
            client.get(f"/locations/{SANDBOX_LOCATION_ID}")
            began = time.perf_counter()
            for _ in range(50):
                assert client.get(f"/locations/{SANDBOX_LOCATION_ID}").status_code == 200
            per_request = (time.perf_counter() - began) / 50
    finally:
        server.stop()
    assert per_request < 0.02
    assert sandbox.stats["total"] == 51

"""Walking skeleton under a real rate limit, in real time: MCP client -> create_appointment ->
outbox worker -> connector -> GHL simulator (20 requests / 2 s) over loopback.

Every booking must arrive exactly once and the simulator must never answer 429.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from mcp import Client

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import GHLSandboxConfig
from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import build_worker

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
BOOKINGS = 50


async def test_50_bookings_delivered_exactly_once_without_a_single_429(settings_factory: Any) -> None:
    sim, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=20, burst_interval_ms=2000))
    rt = Runtime(settings_factory(server.url, worker_concurrency=4))  # real clock, real sleeps
    try:
        mcp_server = build_server(rt)
        await rt.warm_up()
        worker = await build_worker(rt)
        async with Client(mcp_server, cache=None) as client:
            for i in range(BOOKINGS):
                day, hour = 1 + i // 8, 9 + i % 8
                args = {"first_name": "Guest", "last_name": str(i), "email": f"guest{i}@example.com",
                        "start_time": f"2026-12-{day:02d}T{hour:02d}:00:00", "timezone": "America/New_York",
                        "title": f"Tour {i}", "allow_past": True}  # fmt: skip
                result = await client.call_tool("create_appointment", args)
                assert not result.is_error, result.content
            deadline = time.monotonic() + 240
            while True:
                await worker.run_until_idle()
                rt.touch()
                status = await client.call_tool("get_sync_status", {"max_age_seconds": 0})
                totals = (status.structured_content or {})["totals"]
                if not totals.get("pending") and not totals.get("in_flight"):
                    break
                assert time.monotonic() < deadline, totals
                await asyncio.sleep(0.2)
        assert totals.get("succeeded") == BOOKINGS and not totals.get("dead"), totals
        snap = sim.snapshot()
        assert len(snap["appointments"]) == BOOKINGS
        per_contact = Counter(a["contactId"] for a in snap["appointments"])
        assert len(per_contact) == BOOKINGS and set(per_contact.values()) == {1}  # exactly once
        assert sim.stats["by_status"].get("429", 0) == 0
    finally:
        await rt.aclose()
        server.stop()

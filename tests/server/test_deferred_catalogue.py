"""`serve` answers the handshake before the catalogue is built; early catalogue requests wait for it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client

from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server

pytestmark = pytest.mark.anyio


async def test_early_list_tools_waits_for_the_whole_catalogue(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, sandbox = ghl_sandbox
    rt = Runtime(settings_factory(sandbox.url))
    server = build_server(rt, defer_catalogue=True)
    assert await server.list_tools() == []  # nothing registered yet: the handshake does not need it
    seen: list[set[str]] = []
    try:
        async with Client(server, cache=None) as client, anyio.create_task_group() as tg:

            async def early_list() -> None:
                seen.append({t.name for t in (await client.list_tools()).tools})

            tg.start_soon(early_list)
            await anyio.sleep(0.05)
            assert seen == []  # still waiting, not answered with a partial list
            await server.complete_catalogue()
        assert len(seen) == 1 and {"create_appointment", "get_sync_status", "qualify_lead"} <= seen[0]
        eager = {t.name for t in await build_server(rt).list_tools()}
        assert seen[0] == eager
    finally:
        await rt.aclose()

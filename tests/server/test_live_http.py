"""`crm-mcp serve --transport http --sandbox`: subscriptions notify over streamable HTTP, and the
streams are resumable (a priming event with an id and a retry interval, replay after it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ResourceUpdatedNotification

from tests.server.test_transports import clean_env, free_port, serving

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "resume-probe", "version": "0"},
    },
}
SSE_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


# handshake-era resources/subscribe on purpose (2026-07-28 clients listen instead; the SDK warns)
@pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")
async def test_subscription_update_arrives_over_http(tmp_path: Path) -> None:
    status_updated = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification) and message.params.uri == "sync://status":
            status_updated.set()

    port = free_port()
    with serving(["--transport", "http", "--sandbox"], clean_env(tmp_path), port):
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url, cache=None, mode="legacy", message_handler=on_message) as client:
            await client.subscribe_resource("sync://status")
            r = await client.call_tool(
                "create_appointment",
                {
                    "first_name": "Sub",
                    "email": "sub@example.com",
                    "start_time": "2026-12-03T15:00:00Z",
                    "allow_past": True,
                },
            )
            assert not r.is_error, r.content
            with anyio.fail_after(20):  # the write, then its delivery: within a window or two
                await status_updated.wait()


async def test_streams_are_primed_and_resumable(tmp_path: Path) -> None:
    import httpx2

    port = free_port()
    with serving(["--transport", "http", "--sandbox"], clean_env(tmp_path), port):
        url = f"http://127.0.0.1:{port}/mcp"
        async with httpx2.AsyncClient(timeout=10) as http:
            first = await http.post(url, json=INIT, headers=SSE_HEADERS)
            assert first.status_code == 200, first.text
            assert first.headers["content-type"].startswith("text/event-stream")
            frames = [f for f in first.text.replace("\r\n", "\n").split("\n\n") if f.strip()]
            priming = dict(line.split(": ", 1) for line in frames[0].splitlines() if ": " in line)
            assert priming.get("id") and priming.get("retry") == "1000", frames[0]  # priming event
            assert any('"result"' in f and "id: " in f for f in frames[1:])  # the answer, numbered

            # a client that lost the stream right after the priming event gets the answer again
            headers = {
                "Accept": "text/event-stream",
                "mcp-session-id": first.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-11-25",
                "last-event-id": priming["id"],
            }
            with anyio.fail_after(10):  # the replayed stream stays open: read until the answer
                async with http.stream("GET", url, headers=headers) as replay:
                    assert replay.status_code == 200
                    async for line in replay.aiter_lines():
                        if '"serverInfo"' in line:
                            break

"""Live MCP resources through real MCP clients: subscriptions, the operation resource, completions.

The coalescing window is closed by the test (`Window`) rather than by a wall clock, so "several
changes, one notification" is checked exactly, never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from mcp import Client
from mcp.types import (
    CallToolResult,
    PromptReference,
    ResourceLink,
    ResourceTemplateReference,
    ResourceUpdatedNotification,
)

from crm_mcp.runtime import Runtime
from crm_mcp.server.app import CRMServer, build_server
from crm_mcp.server.run import build_worker
from crm_mcp.server.subscriptions import ResourceWatcher
from tests.harness import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

BOOKING = {
    "first_name": "Live",
    "email": "live@example.com",
    "start_time": "2026-12-01T15:00:00Z",
    "allow_past": True,
}


class Window:
    """Stands in for the watcher's one-second coalescing sleep: it ends when the test says."""

    def __init__(self, watcher: ResourceWatcher) -> None:
        self._watcher = watcher
        self._end = asyncio.Event()
        self.open = False

    async def sleep(self, _seconds: float) -> None:
        self.open = True
        await self._end.wait()
        self._end.clear()
        self.open = False

    async def close(self) -> None:
        """End the window if one is open (a change happened) and wait for the check after it."""
        await wait_all_tasks_blocked()
        if not self.open:
            return
        self._watcher.checked.clear()
        self._end.set()
        with anyio.fail_after(10):
            await self._watcher.checked.wait()
        await wait_all_tasks_blocked()  # the client's side of the notification


@dataclass
class Live:
    server: CRMServer
    runtime: Runtime
    worker: Any
    window: Window
    updates: list[str] = field(default_factory=list)

    async def on_message(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.updates.append(message.params.uri)

    def client(self, **kwargs: Any) -> Client:
        return Client(self.server, cache=None, message_handler=self.on_message, **kwargs)

    async def deliver(self) -> None:
        await self.worker.run_until_idle()
        self.runtime.touch()


@asynccontextmanager
async def live(settings: Any) -> AsyncIterator[Live]:
    clock = FakeClock()
    rt = Runtime(settings, clock=clock, connector_overrides={"clock": clock.monotonic, "sleep": clock.sleep})
    server = build_server(rt)
    assert server.watcher is not None
    window = Window(server.watcher)
    server.watcher.sleep = window.sleep
    try:
        await rt.warm_up()
        yield Live(server, rt, await build_worker(rt), window)
    finally:
        await server.watcher.aclose()
        await rt.aclose()


async def book(client: Client, **extra: Any) -> CallToolResult:
    result = await client.call_tool("create_appointment", {**BOOKING, **extra})
    assert not result.is_error, result.content
    return result


# The handshake era (2025-*) subscribes with resources/subscribe, which the 2026-07-28 protocol
# replaces with subscriptions/listen; the SDK's client warns of that. These tests use it on purpose.
LEGACY = pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")


@LEGACY
async def test_subscribe_gives_one_coalesced_update_and_unsubscribe_stops_them(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, sandbox = ghl_sandbox
    async with live(settings_factory(sandbox.url)) as lv, lv.client(mode="legacy") as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is True
        await client.subscribe_resource("sync://status")

        await book(client)  # a local write: pending +1
        await lv.deliver()  # delivered: pending -1, succeeded +1
        await book(client, start_time="2026-12-02T15:00:00Z")
        await lv.window.close()
        assert lv.updates == ["sync://status"]  # three changes inside one window: one notification

        await lv.window.close()  # nothing changed since: nothing sent
        assert lv.updates == ["sync://status"]

        await client.unsubscribe_resource("sync://status")
        await lv.deliver()
        await lv.window.close()
        assert lv.updates == ["sync://status"]


@LEGACY
async def test_write_links_its_operation_and_its_resource_follows_delivery(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, sandbox = ghl_sandbox
    async with live(settings_factory(sandbox.url)) as lv, lv.client(mode="legacy") as client:
        result = await book(client)
        op_id = (result.structured_content or {})["sync_operation_id"]
        links = [c for c in result.content if isinstance(c, ResourceLink)]
        assert [str(link.uri) for link in links] == [f"sync://operations/{op_id}"]

        uri = str(links[0].uri)
        pending = json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        assert pending["status"] == "pending" and pending["attempt_log"] == []

        await client.subscribe_resource(uri)
        await lv.deliver()
        await lv.window.close()
        assert lv.updates == [uri]

        done = json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
        assert done["status"] == "succeeded"
        assert [a["outcome"] for a in done["attempt_log"]] == ["success"]
        assert done["crm_ids"].get("appointment"), done["crm_ids"]
        assert done["result"] is not None and done["dead_letters"] == []


async def test_unknown_operation_is_a_clear_not_found(ghl_sandbox: Any, settings_factory: Any) -> None:
    from mcp.shared.exceptions import MCPError

    _sim, sandbox = ghl_sandbox
    async with live(settings_factory(sandbox.url)) as lv, lv.client() as client:
        with pytest.raises(MCPError, match="sync_operation_id"):
            await client.read_resource("sync://operations/nope")


async def test_listen_stream_gets_the_update_on_the_modern_protocol(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, sandbox = ghl_sandbox
    async with live(settings_factory(sandbox.url)) as lv, lv.client() as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(resource_subscriptions=["sync://dead-letter", "sync://status"]) as sub:
            await book(client)
            await lv.window.close()
            with anyio.fail_after(5):
                event = await anext(aiter(sub))
            assert event.uri == "sync://status"  # type: ignore[union-attr]
        await wait_all_tasks_blocked()
        assert lv.server.watcher is not None and lv.server.watcher.uris() == set()  # stream closed: unwatched


async def test_completions_offer_connections_and_ids(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, sandbox = ghl_sandbox
    async with live(settings_factory(sandbox.url)) as lv, lv.client() as client:
        assert client.server_capabilities.completions is not None
        op_id = ((await book(client)).structured_content or {})["sync_operation_id"]

        schema = ResourceTemplateReference(uri="crm://{connection}/schema")
        got = await client.complete(schema, {"name": "connection", "value": "goh"})
        assert got.completion.values == ["gohighlevel"]

        ops = ResourceTemplateReference(uri="sync://operations/{id}")
        got = await client.complete(ops, {"name": "id", "value": op_id[:4]})
        assert op_id in got.completion.values and len(got.completion.values) <= 100
        got = await client.complete(ops, {"name": "id", "value": "zz-no-such"})
        assert got.completion.values == [] and got.completion.has_more is False

        dead = ResourceTemplateReference(uri="sync://dead-letter/{entry_id}")
        assert (await client.complete(dead, {"name": "entry_id", "value": ""})).completion.values == []

        unknown = PromptReference(name="no_such_prompt")
        assert (await client.complete(unknown, {"name": "arg1", "value": "x"})).completion.values == []

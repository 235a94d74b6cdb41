"""Test harness: a runtime + MCP server + worker wired to a sandbox, driven by a real MCP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp import Client
from mcp.types import ElicitResult

from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import build_worker


class FakeClock:
    """A settable UTC clock shared by the tools and the worker: tests move time, never sleep."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        """Connector waits (backoff, rate limits) move the shared clock instead of wall time."""
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)


@dataclass
class Harness:
    client: Client
    runtime: Runtime
    worker: Any
    clock: FakeClock

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> Any:
        return await self.client.call_tool(tool, args or {})

    async def ok(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        result = await self.call(tool, args)
        assert not result.is_error, [getattr(c, "text", c) for c in result.content]
        return dict(result.structured_content or {})

    async def deliver(self) -> int:
        """Run the worker until nothing is due; returns how many operations it processed."""
        done = int(await self.worker.run_until_idle())
        self.runtime.touch()
        return done

    async def settle(self, *, step_s: float = 60.0, rounds: int = 50) -> None:
        """Deliver, then move the clock past every scheduled retry, until nothing is pending."""
        for _ in range(rounds):
            await self.deliver()
            status = await self.ok("get_sync_status", {"max_age_seconds": 0})
            if not status["totals"].get("pending") and not status["totals"].get("in_flight"):
                return
            self.clock.advance(step_s)
        raise AssertionError(f"outbox did not settle: {status['totals']}")


async def say_yes(context: Any, params: Any) -> ElicitResult:
    """The harness's user agrees to every confirmation a destructive or bulk tool asks for
    (tests/tools/test_confirmation.py covers declining and clients that cannot ask)."""
    return ElicitResult(action="accept", content={"confirm": True})


@asynccontextmanager
async def harness(settings: Any, **connector_overrides: Any) -> AsyncIterator[Harness]:
    """`connector_overrides`: more connector options (e.g. `timeout_s`) besides the fake clock."""
    clock = FakeClock()
    overrides = {"clock": clock.monotonic, "sleep": clock.sleep, **connector_overrides}
    rt = Runtime(settings, clock=clock, connector_overrides=overrides)
    try:
        server = build_server(rt)
        await rt.warm_up()
        worker = await build_worker(rt)
        async with Client(server, cache=None, elicitation_callback=say_yes) as client:
            yield Harness(client=client, runtime=rt, worker=worker, clock=clock)
    finally:
        await rt.aclose()

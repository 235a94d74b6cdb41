"""Fixtures of the Zoho tests: one simulator per module, reset and put on the test's fake clock
for each test; connectors on the same virtual clock (their waits move it, never the wall)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crm_mcp.providers.zoho import PROVIDER
from crm_mcp.providers.zoho.connector import ZohoConnector
from crm_mcp.providers.zoho.sandbox import ZohoSandbox, start_zoho_sandbox
from crm_mcp.providers.zoho.sandbox_handle import ZohoSandboxHandle
from crm_mcp.sandbox.runner import SandboxServer
from tests.providers.support import FakeTime, served_fixture

served = served_fixture(start_zoho_sandbox)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sim(served: tuple[ZohoSandbox, SandboxServer], fake: FakeTime) -> ZohoSandbox:
    sb = served[0]
    sb.reset()
    sb.set_clock(fake.wall)
    sb.concurrency, sb.latency_s, sb.credits.limit = 20, 0.0, 50_000
    return sb


@pytest.fixture
def handle(served: tuple[ZohoSandbox, SandboxServer], sim: ZohoSandbox) -> ZohoSandboxHandle:
    return ZohoSandboxHandle(sim, served[1])


@pytest.fixture
async def make(handle: ZohoSandboxHandle, fake: FakeTime) -> AsyncIterator[Any]:
    """Connectors to the simulator (static token unless options say otherwise), closed after."""
    made: list[ZohoConnector] = []

    def factory(options: dict[str, Any] | None = None, **overrides: Any) -> ZohoConnector:
        assert PROVIDER.connector is not None
        base = handle.connection_options() if options is None else options
        opts = {
            **base,
            "clock": fake.clock,
            "sleep": fake.sleep,
            "token_clock": fake.wall,
            "rng": random.Random(7),
            **overrides,
        }
        conn = PROVIDER.connector("zoho", opts)
        assert isinstance(conn, ZohoConnector)
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        await conn.aclose()


@pytest.fixture
def zoho(make: Any) -> ZohoConnector:
    return make()

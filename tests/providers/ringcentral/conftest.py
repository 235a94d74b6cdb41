"""Fixtures of the RingCentral tests: one simulator per module, reset, put on the test's virtual
clock and seeded with a call history ending at that clock's now, for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm_mcp.providers.ringcentral.sandbox import RingCentralSandbox, start_ringcentral_sandbox
from crm_mcp.sandbox.runner import SandboxServer
from tests.providers.ringcentral.support import FakeTime


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RingCentralSandbox, SandboxServer]]:
    sandbox, server = start_ringcentral_sandbox()
    yield sandbox, server
    server.stop()


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def url(served: tuple[RingCentralSandbox, SandboxServer]) -> str:
    return served[1].url


@pytest.fixture
def sandbox(served: tuple[RingCentralSandbox, SandboxServer], fake: FakeTime) -> RingCentralSandbox:
    sb = served[0]
    sb.config.clock = fake.wall
    sb.set_limits(light=50, medium=40, heavy=10, auth=5)
    sb.seed_calls(60, 3, pending=2)
    sb.reset()
    return sb

"""Fixtures of the RingCentral tests: one simulator per module, reset, put on the test's virtual
clock and seeded with a call history ending at that clock's now, for each test."""

from __future__ import annotations

import time

import pytest

from crm_mcp.providers.ringcentral.sandbox import RingCentralSandbox, start_ringcentral_sandbox
from crm_mcp.sandbox.runner import SandboxServer
from tests.providers.support import FakeTime, served_fixture

served = served_fixture(start_ringcentral_sandbox)


@pytest.fixture
def fake() -> FakeTime:
    """Its epoch is the real now (to the second), not the fixed date the other providers use."""
    return FakeTime(epoch=float(int(time.time())))


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

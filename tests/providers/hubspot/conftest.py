"""Fixtures of the HubSpot connector tests: one simulator per module, reset and put on the
test's fake clock for each test."""

from __future__ import annotations

import pytest

from crm_mcp.providers.hubspot.sandbox import HubSpotSandbox, start_hubspot_sandbox
from crm_mcp.sandbox.runner import SandboxServer
from tests.providers.support import FakeTime, served_fixture

served = served_fixture(start_hubspot_sandbox)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sandbox(served: tuple[HubSpotSandbox, SandboxServer], fake: FakeTime) -> HubSpotSandbox:
    sb = served[0]
    sb.reset()
    sb.config.clock = fake.wall
    return sb

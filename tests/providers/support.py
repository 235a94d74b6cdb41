"""What the provider tests share: a virtual clock, a jitter-free RNG and a simulator fixture."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from crm_mcp.connectors.provider import Provider, SandboxHandle
from crm_mcp.sandbox.runner import SandboxServer

S = TypeVar("S")


class FakeTime:
    """Monotonic `clock` for the client, epoch `wall` for the simulator and the token clock;
    `sleep` advances both (and records the wait) instead of waiting. With `yields`, `sleep` also
    lets other tasks run, as a real one would."""

    def __init__(self, epoch: float = 1_772_000_000.0, *, yields: bool = False) -> None:  # 2026-02-25
        self.now = 1000.0
        self.epoch = epoch
        self.yields = yields
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        if self.yields:
            await asyncio.sleep(0)


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def served_fixture(start: Callable[[], tuple[S, SandboxServer]]) -> Any:
    """A module-scoped `served` fixture: (simulator, server) as `start()` makes them, stopped after."""

    @pytest.fixture(scope="module")
    def served() -> Iterator[tuple[S, SandboxServer]]:
        sim, server = start()
        yield sim, server
        server.stop()

    return served


def running_sandbox(provider: Provider) -> Iterator[tuple[Provider, SandboxHandle]]:
    """`provider`'s simulator for the conformance suites, stopped after. The simulators keep their
    windows on wall time, the connectors there on virtual time: a budget far above what any case
    spends keeps the two from disagreeing (429s come from faults)."""
    assert provider.sandbox is not None
    handle = provider.sandbox(0)
    handle.set_limits(burst=10_000)
    yield provider, handle
    handle.stop()

"""Connector test fixtures: virtual time, where sleeping advances the clock and never the wall."""

from __future__ import annotations

import pytest


class FakeTime:
    def __init__(self, start: float = 1000.0, wall: float = 1_767_225_600.0) -> None:
        self.now = start
        self.wall_start = wall  # 2026-01-01T00:00:00Z
        self.start = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_start + (self.now - self.start)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()

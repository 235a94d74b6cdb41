"""Time and randomness the HubSpot connector tests inject (shared by the test modules)."""

from __future__ import annotations

import random


class FakeTime:
    """Monotonic `clock` for the client, epoch `wall` for the simulator; `sleep` advances both."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.epoch = 1_772_000_000.0  # 2026-02-25
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a

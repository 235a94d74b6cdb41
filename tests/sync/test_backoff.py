"""Backoff is exponential with full jitter, capped, and never schedules past the deadline."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from crm_mcp.sync.backoff import next_delay, retry_at

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@given(attempt=st.integers(min_value=-3, max_value=10_000), seed=st.integers(0, 2**32))
def test_delay_is_within_the_exponential_ceiling(attempt: int, seed: int) -> None:
    delay = next_delay(attempt, base=1.0, cap=300.0, rng=random.Random(seed))
    ceiling = min(300.0, 2.0 ** min(max(attempt - 1, 0), 20))
    assert 0.0 <= delay <= ceiling


def test_delays_grow_and_spread() -> None:
    rng = random.Random(7)
    early = [next_delay(1, rng=rng) for _ in range(200)]
    late = [next_delay(8, rng=rng) for _ in range(200)]
    assert max(early) <= 1.0
    assert sum(late) / len(late) > 20 * sum(early) / len(early)
    assert len({round(d, 3) for d in late}) > 150  # jittered, not lockstep


def test_retry_after_is_honoured_exactly() -> None:
    at = retry_at(NOW, 3, 42.0, random.Random(1), NOW + timedelta(hours=1))
    assert at == NOW + timedelta(seconds=42)


def test_no_retry_past_the_deadline() -> None:
    assert retry_at(NOW, 1, 120.0, random.Random(1), NOW + timedelta(seconds=60)) is None
    at = retry_at(NOW, 1, None, random.Random(1), NOW + timedelta(seconds=60))
    assert at is not None and NOW <= at <= NOW + timedelta(seconds=1)

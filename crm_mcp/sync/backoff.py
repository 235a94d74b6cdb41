"""When to try a failed delivery again: exponential backoff with full jitter, bounded by a deadline.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads a burst of failures out
so that retries do not arrive at the CRM in lockstep. Pure functions: the random source is passed
in, so tests pin it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

_MAX_EXPONENT = 62


def next_delay(attempt: int, *, base: float = 1.0, cap: float = 300.0, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first try)."""
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), _MAX_EXPONENT))
    return rng.uniform(0.0, ceiling)


def retry_at(
    now: datetime,
    attempt: int,
    retry_after: float | None,
    rng: random.Random,
    deadline: datetime,
    *,
    base: float = 1.0,
    cap: float = 300.0,
) -> datetime | None:
    """The time of the next attempt, or None when it would fall after `deadline` (give up).

    A server-given `retry_after` (seconds) is honoured exactly: retrying earlier only burns an
    attempt on a request the CRM has already said it will refuse.
    """
    delay = retry_after if retry_after is not None else next_delay(attempt, base=base, cap=cap, rng=rng)
    at = now + timedelta(seconds=max(0.0, delay))
    return None if at > deadline else at

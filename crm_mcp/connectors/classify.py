"""Pure decisions about one HTTP exchange: what kind of outcome it was, and whether it may be re-sent.

Kept free of I/O so the retry loop in `http.py` stays a thin driver and every rule here is testable
with plain values (including property-based tests). `classify` says what the *server* told us;
`may_resend` says whether *we* may send the same request again. They are separate on purpose: a
POST that got a 503 is still a failure for the circuit breaker even though we must not re-send it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# statuses that say "the server (or its edge) is struggling"; other 4xx say "your request is wrong"
BREAKER_FAILURE_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


class OutcomeKind(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REFRESH_AUTH = "refresh_auth"
    FAIL = "fail"


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind in (OutcomeKind.RETRY, OutcomeKind.RATE_LIMITED)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_retry_after(value: str | None, now: Callable[[], datetime] = _utcnow) -> float | None:
    """Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Returns None when absent or unparseable, never a negative number (a date in the past means 0).
    `now` is injected so date handling is deterministic in tests.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def classify(
    status: int,
    headers: Mapping[str, str],
    method: str,
    *,
    now: Callable[[], datetime] = _utcnow,
) -> Outcome:
    """Map a response status (+ Retry-After) to what the client should do next.

    `method` is part of the signature so a provider rule can depend on it, but today no status
    changes meaning by method: whether a RETRY may be re-sent is `may_resend`'s decision.
    """
    del method  # see docstring
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now)
    if 200 <= status < 400:
        return Outcome(OutcomeKind.SUCCESS)
    if status == 429:
        return Outcome(OutcomeKind.RATE_LIMITED, retry_after)
    if status == 401:
        return Outcome(OutcomeKind.REFRESH_AUTH)
    if status in RETRYABLE_STATUSES:
        return Outcome(OutcomeKind.RETRY, retry_after)
    return Outcome(OutcomeKind.FAIL)


def may_resend(method: str, idempotent: bool | None, *, request_reached_server: bool = True) -> bool:
    """Whether sending the same request again cannot duplicate an effect.

    Idempotent HTTP methods may be re-sent; a POST only when the caller vouches for it
    (`idempotent=True`, e.g. GHL's upsert dedupes by email/phone) — or when the request provably never
    reached the server (connection refused) or was refused before processing (429).
    """
    if idempotent is not None:
        return idempotent or not request_reached_server
    return method.upper() in IDEMPOTENT_METHODS or not request_reached_server


def counts_as_breaker_failure(status: int) -> bool:
    """5xx, 408 and 429 say the provider is unhealthy; other 4xx are the caller's mistake."""
    return status in BREAKER_FAILURE_STATUSES

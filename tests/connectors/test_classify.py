"""classify / may_resend / parse_retry_after: pure decisions, including property-based checks."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from crm_mcp.connectors.classify import (
    OutcomeKind,
    classify,
    counts_as_breaker_failure,
    may_resend,
    parse_retry_after,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def fixed_now() -> datetime:
    return NOW


def test_success_and_redirect() -> None:
    assert classify(200, {}, "GET").kind is OutcomeKind.SUCCESS
    assert classify(201, {}, "POST").kind is OutcomeKind.SUCCESS
    assert classify(304, {}, "GET").kind is OutcomeKind.SUCCESS


def test_retryable_statuses() -> None:
    for status in (408, 425, 500, 502, 503, 504):
        assert classify(status, {}, "GET").kind is OutcomeKind.RETRY, status


def test_429_is_rate_limited_with_retry_after_seconds() -> None:
    out = classify(429, {"Retry-After": "7"}, "GET")
    assert out.kind is OutcomeKind.RATE_LIMITED
    assert out.retry_after == 7.0
    assert classify(429, {}, "GET").retry_after is None


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert classify(503, {"retry-after": "2"}, "GET").retry_after == 2.0


def test_retry_after_http_date_uses_injected_now() -> None:
    out = classify(503, {"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, "GET", now=fixed_now)
    assert out.kind is OutcomeKind.RETRY
    assert out.retry_after == 30.0


def test_retry_after_in_the_past_or_garbage() -> None:
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", fixed_now) == 0.0
    assert parse_retry_after("soon", fixed_now) is None
    assert parse_retry_after("", fixed_now) is None
    assert parse_retry_after("-5", fixed_now) == 0.0
    assert parse_retry_after("nan", fixed_now) is None


def test_401_refresh_and_other_4xx_fail() -> None:
    assert classify(401, {}, "GET").kind is OutcomeKind.REFRESH_AUTH
    for status in (400, 403, 404, 409, 422):
        assert classify(status, {}, "GET").kind is OutcomeKind.FAIL, status


def test_may_resend_rules() -> None:
    for m in ("GET", "PUT", "DELETE", "HEAD", "get"):
        assert may_resend(m, None)
    assert not may_resend("POST", None)
    assert may_resend("POST", True)
    assert not may_resend("GET", False)
    # a request that provably never reached the server may always be sent again
    assert may_resend("POST", None, request_reached_server=False)


def test_breaker_failure_statuses() -> None:
    assert counts_as_breaker_failure(503)
    assert counts_as_breaker_failure(408)
    assert counts_as_breaker_failure(429)
    assert not counts_as_breaker_failure(404)
    assert not counts_as_breaker_failure(422)
    assert not counts_as_breaker_failure(200)


@given(st.integers(min_value=100, max_value=599), st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_every_status_has_exactly_one_sensible_kind(status: int, method: str) -> None:
    out = classify(status, {}, method)
    if 200 <= status < 400:
        assert out.kind is OutcomeKind.SUCCESS
    elif status >= 500 and status not in (500, 502, 503, 504):
        assert out.kind is OutcomeKind.FAIL  # 501, 505...: retrying will not help
    assert out.retryable == (out.kind in (OutcomeKind.RETRY, OutcomeKind.RATE_LIMITED))
    assert out.kind is not OutcomeKind.REFRESH_AUTH or status == 401


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_seconds_roundtrip(seconds: int) -> None:
    assert parse_retry_after(str(seconds), fixed_now) == float(seconds)


@given(st.text(max_size=40))
def test_retry_after_never_raises_or_goes_negative(text: str) -> None:
    value = parse_retry_after(text, fixed_now)
    assert value is None or value >= 0.0

"""Conflict policies: each rule, the status ladders with `cancelled`, and properties over all inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_mcp.sync.conflicts import (
    APPOINTMENT_OUTCOMES,
    LEAD_STATUS_ORDER,
    POLICIES,
    policy_for,
    resolve,
)

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EARLIER, LATER = T - timedelta(minutes=1), T + timedelta(minutes=1)


def test_same_value_is_no_conflict() -> None:
    for policy in POLICIES:
        r = resolve("lead.email", "a@x.com", T, "a@x.com", LATER, policy)  # type: ignore[arg-type]
        assert (r.value, r.winner, r.needs_review) == ("a@x.com", "same", False)


def test_crm_wins_and_local_wins() -> None:
    assert resolve("lead.phone", "1", LATER, "2", EARLIER, "crm_wins").value == "2"
    assert resolve("lead.phone", "1", EARLIER, "2", LATER, "local_wins").value == "1"


def test_newest_wins_and_ties_keep_local() -> None:
    assert resolve("lead.phone", "1", EARLIER, "2", LATER, "newest_wins").winner == "remote"
    assert resolve("lead.phone", "1", LATER, "2", EARLIER, "newest_wins").winner == "local"
    tie = resolve("lead.phone", "1", T, "2", T, "newest_wins")
    assert tie.winner == "local" and "queued local change" in tie.reason
    assert resolve("lead.phone", "1", None, "2", T, "newest_wins").winner == "remote"
    assert resolve("lead.phone", "1", None, "2", None, "newest_wins").winner == "local"


def test_manual_review_parks_without_applying() -> None:
    r = resolve("appointment.status", "confirmed", EARLIER, "cancelled", LATER, "manual_review")
    assert r.needs_review and r.winner == "none" and r.value == "confirmed"


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        ("contacted", "qualified", "qualified"),
        ("leased", "new", "leased"),
        ("application", "tour_scheduled", "application"),
        ("new", "leased", "leased"),
    ],
)
def test_lead_status_priority(local: str, remote: str, expected: str) -> None:
    # regardless of which change is newer, progress is never undone
    for lts, rts in ((EARLIER, LATER), (LATER, EARLIER)):
        assert resolve("lead.status", local, lts, remote, rts, "status_priority").value == expected


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        ("scheduled", "confirmed", "confirmed"),
        ("confirmed", "completed", "completed"),
        ("confirmed", "cancelled", "cancelled"),  # a cancellation beats a booking still open
        ("scheduled", "cancelled", "cancelled"),
        ("cancelled", "confirmed", "cancelled"),
        ("completed", "cancelled", "completed"),  # it already happened: a late cancel loses
        ("cancelled", "completed", "completed"),
        ("no_show", "confirmed", "no_show"),
    ],
)
def test_appointment_status_priority_with_cancelled(local: str, remote: str, expected: str) -> None:
    for lts, rts in ((EARLIER, LATER), (LATER, EARLIER)):
        assert resolve("appointment.status", local, lts, remote, rts, "status_priority").value == expected


def test_status_priority_falls_back_to_newest_off_ladder_and_on_ties() -> None:
    r = resolve("lead.status", "synced", EARLIER, "qualified", LATER, "status_priority")
    assert r.value == "qualified" and "not on the lead.status ladder" in r.reason
    r = resolve("appointment.status", "completed", LATER, "no_show", EARLIER, "status_priority")
    assert r.value == "completed" and "rank equally" in r.reason


def test_default_policies_and_unknown_policy() -> None:
    assert policy_for("appointment.status") == "status_priority"
    assert policy_for("lead.email") == "newest_wins"
    assert policy_for("lead.email", {"lead.email": "crm_wins"}) == "crm_wins"
    with pytest.raises(ValueError, match="unknown conflict policy"):
        resolve("lead.email", "a", T, "b", T, "coin_flip")  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------

APPT = ["scheduled", "confirmed", "cancelled", *sorted(APPOINTMENT_OUTCOMES)]
times = st.one_of(st.none(), st.datetimes(timezones=st.just(UTC)))
values = st.one_of(st.sampled_from([*LEAD_STATUS_ORDER, *APPT, "lost"]), st.text(max_size=5), st.none())


@given(
    field=st.sampled_from(["lead.status", "appointment.status", "lead.email"]),
    local=values,
    remote=values,
    lts=times,
    rts=times,
    policy=st.sampled_from(POLICIES),
)
def test_resolution_always_picks_one_side(
    field: str, local: object, remote: object, lts: datetime | None, rts: datetime | None, policy: str
) -> None:
    r = resolve(field, local, lts, remote, rts, policy)  # type: ignore[arg-type]
    assert r.value in (local, remote)
    assert r.needs_review == (policy == "manual_review" and local != remote)
    if r.winner == "remote":
        assert r.value == remote
    if r.winner in ("local", "none"):
        assert r.value == local
    assert r.reason
    # deterministic
    assert resolve(field, local, lts, remote, rts, policy) == r  # type: ignore[arg-type]


@given(a=st.sampled_from(APPT), b=st.sampled_from(APPT), ta=st.datetimes(timezones=st.just(UTC)), tb=times)
def test_status_priority_is_symmetric_between_ranks(
    a: str, b: str, ta: datetime, tb: datetime | None
) -> None:
    """Swapping which side holds which status does not change the outcome (unless ranks tie)."""
    one = resolve("appointment.status", a, ta, b, tb, "status_priority")
    two = resolve("appointment.status", b, tb, a, ta, "status_priority")
    if "rank equally" not in one.reason:
        assert one.value == two.value
    if "cancelled" in (a, b) and not {a, b} & APPOINTMENT_OUTCOMES and a != b:
        assert one.value == "cancelled"

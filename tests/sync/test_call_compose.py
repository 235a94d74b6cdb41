"""The call-log pipeline's pure parts: numbers, record choice, the composer, the blocklist."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_mcp.connectors.base import CallRecording, CallSession
from crm_mcp.connectors.phones import phone_variants, to_e164
from crm_mcp.sync.call_pull import blocklist, is_blocked
from crm_mcp.sync.calls import compose, pick, recording_filename, subject, wants_lead


def call(**kw: object) -> CallSession:
    base: dict[str, object] = {
        "id": "s-1",
        "direction": "inbound",
        "result": "missed",
        "started_at": datetime(2026, 12, 1, 15, 4, 5, tzinfo=UTC),
        "duration_seconds": 75,
        "from_number": "(555) 010-2030",
        "from_name": "Jane Roe",
        "to_number": "+15550009999",
        "extension": "101",
    }
    return CallSession.model_validate({**base, **kw})


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(555) 010-2030", "+15550102030"),
        ("+1 555 010 2030", "+15550102030"),
        ("15550102030", "+15550102030"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+44 20 7946 0958;ext=12", "+442079460958"),
        ("101", None),
        ("", None),
        (None, None),
    ],
)
def test_numbers_become_e164(raw: str | None, e164: str | None) -> None:
    assert to_e164(raw) == e164


def test_phone_variants_cover_the_forms_a_strict_search_needs() -> None:
    assert phone_variants("+15550102030") == [
        "+15550102030",
        "15550102030",
        "5550102030",
        "(555) 010-2030",
        "555-010-2030",
    ]


def test_the_match_policy_picks_and_says_why() -> None:
    cands = [
        {"id": "a", "created": "2026-01-01T00:00:00+00:00", "updated": "2026-06-01T00:00:00+00:00"},
        {"id": "b", "created": "2025-01-01T00:00:00+00:00", "updated": "2026-01-01T00:00:00+00:00"},
    ]
    assert pick(cands, "last_updated") == (["a"], "last updated of 2 records with this number")
    assert pick(cands, "earliest_created") == (["b"], "earliest created of 2 records with this number")
    assert pick(cands, "all")[0] == ["a", "b"]
    assert pick([], "all") == ([], "no record")


def test_the_lead_rule() -> None:
    outbound = call(direction="outbound")
    assert wants_lead([outbound], "always")
    assert not wants_lead([outbound], "inbound")
    assert wants_lead([outbound, call()], "inbound")
    assert not wants_lead([call()], "never")


def test_one_composer_states_every_fact() -> None:
    text = compose(call(), recording="none", match="the one record with this number")
    for fact in (
        "Direction: inbound",
        "Result: Missed",
        "Duration: 1m 15s",
        "From: Jane Roe (+15550102030)",
        "To: +15550009999",
        "Extension: 101",
        "Time: 2026-12-01T15:04:05+00:00",
        "Recording: none",
        "Matched: the one record with this number",
        "Call session: s-1",
    ):
        assert fact in text
    assert subject(call()) == "Inbound missed call from Jane Roe"
    assert (
        subject(call(direction="outbound", result="answered", to_name=None))
        == "Outbound call to +15550009999"
    )


def test_recording_file_names_follow_the_content_type() -> None:
    c = call(recording=CallRecording(id="r1", content_type="audio/mpeg"))
    assert recording_filename(c, "audio/mpeg") == "call-s-1.mp3"
    assert recording_filename(c, "audio/wav") == "call-s-1.wav"


def test_the_blocklist_takes_numbers_in_any_form_and_extensions() -> None:
    assert is_blocked(call(), blocklist(["555-010-2030"]))
    assert is_blocked(call(), blocklist(["101"]))
    assert not is_blocked(call(), blocklist(["+15550000000"]))
    assert not is_blocked(call(), blocklist([]))

"""RingCentral's call-log records as neutral call sessions: one per telephony session, however
many queue members rang; its result words mapped in the package; numbers in E.164."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from crm_mcp.providers.ringcentral import wire
from crm_mcp.providers.ringcentral.spec import neutral_result

T0 = "2026-03-02T15:00:00.000Z"


def record(result: str, ext: str, *, session: str = "s-1", direction: str = "Inbound", **kw: Any) -> dict:
    ours = {"phoneNumber": "+16505550100", "extensionNumber": ext, "name": f"Ext {ext}"}
    theirs = {"phoneNumber": "(415) 555-0123"}
    frm, to = (ours, theirs) if direction == "Outbound" else (theirs, ours)
    return {"id": f"r{ext}", "telephonySessionId": session, "sessionId": "9", "startTime": T0,
            "duration": kw.pop("duration", 30), "type": "Voice", "direction": direction,
            "result": result, "from": frm, "to": to, **kw}  # fmt: skip


@pytest.mark.parametrize(
    ("word", "neutral"),
    [("Accepted", "answered"), ("Call connected", "answered"), ("Voicemail", "voicemail"),
     ("Sent to Voicemail", "voicemail"), ("Missed", "missed"), ("No Answer", "missed"),
     ("Busy", "missed"), ("Rejected", "missed"), ("Hang Up", "missed"), (None, "missed")],
)  # fmt: skip
def test_result_words_map_to_the_neutral_results(word: str | None, neutral: str) -> None:
    assert neutral_result(word) == neutral


def test_a_queue_call_answered_by_one_member_is_one_answered_session_with_that_extension() -> None:
    rec = {"id": "77", "uri": "u", "type": "Automatic", "contentUri": "https://media.ringcentral.com/x"}
    records = [record("Missed", "101", duration=12), record("Accepted", "102", duration=95, recording=rec),
               record("Missed", "103", duration=12)]  # fmt: skip
    (group,) = wire.group_sessions(records).values()
    call = wire.session_from_records(group)
    assert call is not None
    assert (call.id, call.result, call.extension, call.duration_seconds) == ("s-1", "answered", "102", 95)
    assert (call.direction, call.from_number, call.to_number) == ("inbound", "+14155550123", "+16505550100")
    assert call.recording is not None and (call.recording.id, call.recording.ready) == ("77", True)
    assert call.started_at == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_a_queue_call_nobody_answered_is_one_missed_session_with_no_single_extension() -> None:
    call = wire.session_from_records([record("Missed", "101"), record("Missed", "102")])
    assert call is not None and (call.result, call.extension) == ("missed", None)


def test_a_queue_call_that_reached_voicemail_is_voicemail() -> None:
    records = [record("Missed", "101"), record("Missed", "102"), record("Voicemail", "800")]
    call = wire.session_from_records(records)
    assert call is not None and (call.result, call.extension) == ("voicemail", "800")


def test_an_answering_leg_inside_a_record_counts() -> None:
    leg = {**record("Accepted", "105"), "legType": "Accept"}
    call = wire.session_from_records([record("Missed", "101", legs=[leg])])
    assert call is not None and (call.result, call.extension) == ("answered", "105")


def test_outbound_calls_take_the_calling_extension() -> None:
    call = wire.session_from_records([record("Call connected", "104", direction="Outbound")])
    assert call is not None and (call.direction, call.result, call.extension) == (
        "outbound",
        "answered",
        "104",
    )
    assert call.to_number == "+14155550123"


def test_a_recording_on_an_unfinished_call_is_not_ready_yet() -> None:
    rec = {"id": "78", "uri": "u", "type": "OnDemand", "contentUri": "https://media.ringcentral.com/y"}
    call = wire.session_from_records([record("Accepted", "101", recording=rec, finished=False)])
    assert call is not None and call.recording is not None and call.recording.ready is False


def test_a_call_still_in_progress_is_not_a_session_yet() -> None:
    assert wire.session_from_records([record("In Progress", "101")]) is None


def test_fax_and_deleted_records_are_not_calls() -> None:
    groups = wire.group_sessions([record("Accepted", "1", type="Fax"), record("Accepted", "2", deleted=True)])
    assert groups == {}


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    cursor = wire.encode_cursor({"page": "2", "perPage": "5"}, ["s-9"])
    assert wire.decode_cursor(cursor) == ({"page": "2", "perPage": "5"}, ["s-9"])
    with pytest.raises(ValueError):
        wire.decode_cursor("not-a-cursor")


def test_the_next_page_is_only_ever_a_call_log_query() -> None:
    body = {
        "navigation": {"nextPage": {"uri": "https://evil.example/restapi/v1.0/account/1/call-log?page=2"}}
    }
    assert wire.next_page(body) == {"page": "2"}  # the host is dropped: the configured one is used
    with pytest.raises(ValueError):
        wire.next_page({"navigation": {"nextPage": {"uri": "https://x/restapi/v1.0/account/1/recording/2"}}})
    assert wire.next_page({"navigation": {"firstPage": {"uri": "x"}}}) is None


def test_query_times_are_utc_with_milliseconds() -> None:
    params = wire.call_log_params(
        datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, 1, 2, 3, 456000, tzinfo=UTC), 50
    )
    assert params["dateFrom"] == "2026-03-01T00:00:00.000Z" and params["dateTo"] == "2026-03-02T01:02:03.456Z"
    assert (params["view"], params["type"], params["perPage"]) == ("Detailed", "Voice", "50")

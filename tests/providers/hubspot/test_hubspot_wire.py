"""HubSpot wire mappers and spec: pure functions, no network."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from crm_mcp.connectors.base import APPOINTMENT_STATUSES, LEAD_STATUSES, Appointment, Contact, Note, Task
from crm_mcp.errors import InvalidRequestError
from crm_mcp.providers.hubspot import wire
from crm_mcp.providers.hubspot.spec import (
    HUBSPOT_SPEC,
    LEAD_STATUS_TO_WIRE,
    OUTCOME_FROM_WIRE,
    OUTCOME_TO_WIRE,
)

START = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


def test_spec_names_hubspot_headers_limits_and_fields() -> None:
    s = HUBSPOT_SPEC
    assert s.default_base_url == "https://api.hubapi.com"
    assert (s.remaining_header, s.limit_header) == (
        "X-HubSpot-RateLimit-Remaining",
        "X-HubSpot-RateLimit-Max",
    )
    assert s.interval_ms_header == "X-HubSpot-RateLimit-Interval-Milliseconds"
    assert s.daily_remaining_header == "X-HubSpot-RateLimit-Daily-Remaining"
    assert (s.burst_limit, s.burst_interval_s, s.daily_limit) == (100, 10, 250_000)
    assert s.logical_fields["lead_status"] == "hs_lead_status"
    assert (s.tenant_option, s.tenant_label) == ("portal_id", "portal")
    (search,) = s.endpoint_limits
    assert (search.limit, search.interval_s, search.policies) == (4, 1.0, ("SECONDLY",))
    assert s.rate_limit_policy_field == "policyName"


def test_every_neutral_status_has_an_outcome_and_back() -> None:
    assert set(OUTCOME_TO_WIRE) == set(APPOINTMENT_STATUSES)
    assert OUTCOME_TO_WIRE["confirmed"] == OUTCOME_TO_WIRE["scheduled"] == "SCHEDULED"
    assert OUTCOME_TO_WIRE["cancelled"] == "CANCELED"
    assert OUTCOME_FROM_WIRE["RESCHEDULED"] == "scheduled"
    assert set(LEAD_STATUS_TO_WIRE) == set(LEAD_STATUSES)


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (datetime(2026, 3, 1, 20, 0, tzinfo=timezone(timedelta(hours=-5))), "date", "2026-03-01"),
        ("2026-03-01T23:30:00+00:00", "date", "2026-03-01"),
        (date(2026, 3, 1), "date", "2026-03-01"),
        (
            datetime(2026, 3, 1, 20, 0, tzinfo=timezone(timedelta(hours=-5))),
            "datetime",
            "2026-03-02T01:00:00.000Z",
        ),
        (datetime(2026, 3, 1, 12, 0), "datetime", "2026-03-01T12:00:00.000Z"),
        (True, "bool", "true"),
        (87.0, "number", "87"),
        (87.5, "number", "87.5"),
        (42, "string", "42"),
        (None, "string", ""),
    ],
)
def test_property_values_are_strings_hubspot_accepts(value: object, kind: str, expected: str) -> None:
    assert wire.property_value(value, kind) == expected


def test_contact_to_wire_sends_strings_and_splits_a_bare_name() -> None:
    props = wire.contact_properties(
        Contact(email="a@example.com", first_name="Ada", phone="+1 555", company_name="Engines", tags=["x"])
    )
    assert props == {"email": "a@example.com", "firstname": "Ada", "phone": "+1 555", "company": "Engines"}
    assert wire.contact_properties(Contact(name="Grace Brewster Hopper")) == {
        "firstname": "Grace",
        "lastname": "Brewster Hopper",
    }
    assert all(isinstance(v, str) for v in props.values())


def test_contact_from_wire_keeps_custom_properties_by_name() -> None:
    c = wire.contact_from_wire(
        {
            "id": "512",
            "properties": {
                "email": "bcooper@biglytics.net",
                "firstname": "Bryan",
                "lastname": "Cooper",
                "company": None,
                "createdate": "2024-03-01T12:00:00.000Z",
                "hs_object_id": "512",
                "hs_lead_status": "NEW",
                "crm_mcp_lead_score": "42",
                "crm_mcp_appointment_status": None,
            },
            "createdAt": "2024-03-01T12:00:00.000Z",
            "updatedAt": "2024-03-02T12:00:00.000Z",
            "archived": False,
        }
    )
    assert (c.id, c.name, c.email, c.company_name) == ("512", "Bryan Cooper", "bcooper@biglytics.net", None)
    assert c.custom_fields == {"hs_lead_status": "NEW", "crm_mcp_lead_score": "42"}
    assert c.date_updated == datetime(2024, 3, 2, 12, tzinfo=UTC)


def test_existing_id_is_read_from_the_409_message() -> None:
    assert (
        wire.existing_contact_id("hubspot POST /x -> 409: Contact already exists. Existing ID: 512") == "512"
    )
    assert wire.existing_contact_id("Conflict") is None


def test_property_to_field_schema() -> None:
    prop = {
        "name": "crm_mcp_appointment_status",
        "label": "Appointment Status",
        "type": "enumeration",
        "fieldType": "select",
        "options": [
            {"label": "Scheduled", "value": "scheduled"},
            {"label": "Old", "value": "old", "hidden": True},
        ],
        "hubspotDefined": False,
        "modificationMetadata": {"readOnlyValue": False},
    }
    f = wire.field_from_wire(prop)
    assert (f.key, f.label, f.type, f.options, f.custom) == (
        "crm_mcp_appointment_status",
        "Appointment Status",
        "enumeration",
        ["scheduled"],
        True,
    )
    assert wire.writable(prop)
    assert not wire.writable({**prop, "modificationMetadata": {"readOnlyValue": True}})
    assert not wire.field_from_wire({**prop, "hubspotDefined": True}).custom


def test_activities_to_wire_and_back() -> None:
    note = wire.note_properties(Note(contact_id="1", body="hello"), START)
    assert note == {"hs_note_body": "hello", "hs_timestamp": "2026-03-02T15:30:00.000Z"}
    task = wire.task_properties(Task(contact_id="1", title="Call", due_date=START, completed=True))
    assert task == {
        "hs_task_subject": "Call",
        "hs_task_status": "COMPLETED",
        "hs_timestamp": "2026-03-02T15:30:00.000Z",
    }
    back = wire.task_from_wire({"id": "9", "properties": {**task, "hs_task_status": "NOT_STARTED"}}, "1")
    assert (back.id, back.title, back.completed, back.due_date) == ("9", "Call", False, START)
    assert wire.association("7", 202) == [
        {"to": {"id": "7"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]}
    ]


@pytest.mark.parametrize("status", APPOINTMENT_STATUSES)
def test_meeting_outcome_round_trip(status: str) -> None:
    props = wire.meeting_properties(
        Appointment(
            contact_id="1", start_time=START, end_time=START + timedelta(hours=1), title="Tour", status=status
        )  # type: ignore[arg-type]
    )
    assert props["hs_meeting_outcome"] == OUTCOME_TO_WIRE[status]
    assert props["hs_timestamp"] == props["hs_meeting_start_time"] == "2026-03-02T15:30:00.000Z"
    back = wire.appointment_from_wire({"id": "5", "properties": props}, "1", status)
    assert (back.status, back.calendar_id, back.title, back.end_time) == (
        status,
        None,
        "Tour",
        START + timedelta(hours=1),
    )


def test_meeting_outcome_read_without_a_wanted_status() -> None:
    def read(outcome: str | None) -> str:
        props = {"hs_meeting_start_time": "2026-03-02T15:30:00.000Z", "hs_meeting_outcome": outcome}
        return wire.appointment_from_wire({"id": "5", "properties": props}, "1").status

    assert [read(o) for o in ("SCHEDULED", "RESCHEDULED", "CANCELED", "COMPLETED", "NO_SHOW", None)] == [
        "scheduled",
        "scheduled",
        "cancelled",
        "completed",
        "no_show",
        "scheduled",
    ]
    # a wanted status that does not map to what came back does not win
    props = {"hs_meeting_start_time": "2026-03-02T15:30:00.000Z", "hs_meeting_outcome": "COMPLETED"}
    assert (
        wire.appointment_from_wire({"id": "5", "properties": props}, "1", "confirmed").status == "completed"
    )


def test_meeting_changes_to_wire() -> None:
    later = START + timedelta(days=1)
    assert wire.meeting_changes_to_wire({"status": "no_show", "start_time": later, "title": "T"}) == {
        "hs_meeting_outcome": "NO_SHOW",
        "hs_meeting_start_time": "2026-03-03T15:30:00.000Z",
        "hs_timestamp": "2026-03-03T15:30:00.000Z",
        "hs_meeting_title": "T",
    }
    assert wire.meeting_changes_to_wire({"end_time": "2026-03-03T16:30:00Z"}) == {
        "hs_meeting_end_time": "2026-03-03T16:30:00.000Z"
    }
    with pytest.raises(InvalidRequestError, match="calendar_id"):
        wire.meeting_changes_to_wire({"calendar_id": "x"})
    with pytest.raises(InvalidRequestError, match="showed"):
        wire.meeting_changes_to_wire({"status": "showed"})


def test_association_pages_and_v3_association_map() -> None:
    page = {"results": [{"toObjectId": 11, "associationTypes": []}], "paging": {"next": {"after": "1"}}}
    assert wire.associated_ids(page) == (["11"], "1")
    assert wire.associated_ids({"results": []}) == ([], None)
    data = {
        "id": "5",
        "associations": {"contacts": {"results": [{"id": "77", "type": "meeting_event_to_contact"}]}},
    }
    assert wire.associated_contact(data) == "77"
    assert wire.associated_contact({"id": "5"}) is None


def test_upsert_rounds_chunk_by_size_and_never_repeat_an_email_in_one_call() -> None:
    many = [Contact(email=f"p{i}@example.com") for i in range(250)]
    assert [len(c) for c in wire.upsert_rounds(many, 100)] == [100, 100, 50]
    mixed = [
        Contact(email="a@example.com"),
        Contact(phone="+1"),
        Contact(email="A@example.com", first_name="second"),
        Contact(email="b@example.com"),
    ]
    assert wire.upsert_rounds(mixed, 100) == [[0, 3], [2]]


def test_batch_207_maps_back_to_inputs_by_email() -> None:
    contacts = [Contact(email="new@example.com"), Contact(email="bad@"), Contact(email="Old@Example.com")]
    body = {
        "status": "COMPLETE",
        "results": [  # not in input order
            {"id": "2", "new": False, "properties": {"email": "old@example.com"}},
            {"id": "3", "new": True, "properties": {"email": "new@example.com"}},
        ],
        "numErrors": 1,
        "errors": [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": "Property values were not valid",
                "context": {"ids": ["bad@"]},
                "errors": [],
                "links": {},
            }
        ],
    }
    items = wire.batch_items(body, [0, 1, 2], contacts)
    assert [(i.index, i.contact.id if i.contact else None, i.created, i.error) for i in items] == [
        (0, "3", True, None),
        (1, None, False, "Property values were not valid"),
        (2, "2", False, None),
    ]
    (lost,) = wire.batch_items({"results": []}, [0], contacts)
    assert lost.error and lost.contact is None


def test_webhook_lead_status_changes_are_reported_in_neutral_words() -> None:
    from crm_mcp.providers.hubspot.webhooks import lead_status_from_wire

    assert [
        lead_status_from_wire(v) for v in ("NEW", "OPEN_DEAL", "BAD_TIMING", "Qualified", "Made up", None)
    ] == [
        "new",
        "application",
        "lost",
        "qualified",  # a portal option that already is a neutral word
        None,
        None,
    ]
    for neutral, option in LEAD_STATUS_TO_WIRE.items():
        back = lead_status_from_wire(option)
        assert back is not None and back in LEAD_STATUSES, (neutral, option)

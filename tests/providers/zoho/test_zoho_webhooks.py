"""The Zoho Notifications adapter on the simulator's callback bodies: the channel token and
server_time verify a callback, one event per record id with a stable id, the token never stored,
and record events become neutral changes (people and events; deletions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from crm_mcp.connectors.webhooks import SignatureRejected
from crm_mcp.providers.zoho.sandbox import SANDBOX_CHANNEL_TOKEN, ZohoSandbox
from crm_mcp.providers.zoho.webhooks import ZohoWebhooks

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
OPTIONS = {"channel_id": "1000000068001", "channel_token": SANDBOX_CHANNEL_TOKEN}


def verify(body: bytes, now: datetime = NOW) -> object:
    return ZohoWebhooks().verify(
        OPTIONS, method="POST", url="https://x/webhooks/zoho/zoho", headers={}, body=body, now=now
    )


def test_token_and_time_verify_a_callback() -> None:
    sim = ZohoSandbox()
    body = sim.notification("Leads", "update", ["1", "2"], when=NOW)
    assert verify(body)
    with pytest.raises(SignatureRejected, match="channel token"):
        verify(sim.notification("Leads", "update", ["1"], token="nope", when=NOW))
    with pytest.raises(SignatureRejected, match="stale"):
        verify(body, NOW + timedelta(minutes=6))
    with pytest.raises(SignatureRejected):
        verify(b"not json")
    with pytest.raises(SignatureRejected, match="no Zoho channel_token"):
        ZohoWebhooks().verify({}, method="POST", url="u", headers={}, body=body, now=NOW)


def test_one_event_per_record_and_neutral_changes() -> None:
    sim = ZohoSandbox()
    with sim.lock:
        lead = str(
            sim.store.insert(
                "Leads", {"Last_Name": "Doe", "First_Name": "Jane", "Lead_Status": "Contacted"}, 0
            ).details["id"]
        )
    adapter = ZohoWebhooks()
    body = sim.notification("Leads", "update", [lead], when=NOW)
    events = adapter.events(
        json.loads(body),
        body,
        adapter.verify(OPTIONS, method="POST", url="u", headers={}, body=body, now=NOW),
        NOW,
    )
    (event,) = events
    assert event.event_id == f"1000000068001:Leads:update:{int(NOW.timestamp() * 1000)}:{lead}"
    assert SANDBOX_CHANNEL_TOKEN not in json.dumps(event.payload)  # the secret is not stored
    assert adapter.tenant(event.payload) == "1000000068001"
    (change,) = adapter.changes(event, field_ids={})
    assert (change.kind, change.remote_id, change.created) == ("contact", lead, False)
    assert change.fields == {"first_name": "Jane", "last_name": "Doe", "status": "contacted"}
    gone_body = sim.notification("Contacts", "delete", ["77"], when=NOW)
    (gone,) = adapter.events(json.loads(gone_body), gone_body, None, NOW)  # type: ignore[arg-type]
    (deleted,) = adapter.changes(gone, field_ids={})
    assert (deleted.remote_id, deleted.deleted) == ("Contacts:77", True)
    start = "2026-03-05T10:00:00+00:00"
    with sim.lock:
        ev = str(
            sim.store.insert(
                "Events",
                {
                    "Event_Title": "Tour",
                    "Start_DateTime": start,
                    "End_DateTime": start,
                    "Appointment_Status": "Cancelled",
                },
                0,
            ).details["id"]
        )
    ev_body = sim.notification("Events", "update", [ev], when=NOW)
    (ev_event,) = adapter.events(json.loads(ev_body), ev_body, None, NOW)  # type: ignore[arg-type]
    (moved,) = adapter.changes(ev_event, field_ids={})
    assert moved.kind == "appointment" and moved.fields["status"] == "cancelled"
    assert moved.fields["start_time"] == datetime(2026, 3, 5, 10, tzinfo=UTC)
    with pytest.raises(ValueError):
        adapter.events({"module": "Leads"}, b"{}", None, NOW)  # type: ignore[arg-type]

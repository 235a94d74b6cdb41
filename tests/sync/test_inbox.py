"""The inbox on SQLite: verified events are stored once, refused ones never; processing applies
GoHighLevel's official example payloads in event-time order and resolves conflicts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from crm_mcp.connectors.webhooks import IncomingEvent as Incoming
from crm_mcp.providers.gohighlevel.sandbox.signer import GHLWebhookSigner, ghl_event_body
from crm_mcp.providers.hubspot.sandbox.signer import hubspot_v3_headers
from crm_mcp.sandbox.webhook_signer import (
    new_standard_secret,
    standard_webhook_headers,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment, ExternalRef, InboxEvent, Lead
from crm_mcp.sync.inbox import process_pending, process_pending_report, receive, store

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXAMPLES = Path("/work/shared/specs/gohighlevel/webhooks")
URL = "http://127.0.0.1/webhooks/x/y"
LOC = "SbxLoc00000000000001"  # the connection's GoHighLevel location


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}")
    await database.upgrade()
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
def ghl() -> GHLWebhookSigner:
    return GHLWebhookSigner(rsa_bits=2048)


def example(name: str) -> dict[str, Any]:
    """An official example payload, typed as its file says (the Update/Delete examples say Create)."""
    path = EXAMPLES / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path} is not available")
    doc = json.loads(path.read_text())
    return {**doc["example"], "type": doc["event"], "locationId": LOC}


async def count(db: Database) -> int:
    async with db.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one())


async def ghl_receive(db: Database, ghl: GHLWebhookSigner, body: bytes, **kw: Any) -> Any:
    return await receive(
        db,
        provider="gohighlevel",
        connection="gohighlevel",
        options={
            "location_id": kw.pop("location_id", LOC),
            "webhook_public_key": ghl.rsa_public_pem,
            "webhook_ed25519_public_key": ghl.ed25519_public_pem,
        },
        method="POST",
        url=URL,
        headers=kw.pop("headers", None) or ghl.headers(body),
        body=body,
        now=kw.pop("now", NOW),
        **kw,
    )


# -- receiving --------------------------------------------------------------------------------


async def test_same_event_twice_is_one_row(db: Database, ghl: GHLWebhookSigner) -> None:
    body = ghl_event_body(
        {"locationId": LOC, "type": "ContactCreate", "id": "c1"}, timestamp=NOW, webhook_id="wh-1"
    )
    first = await ghl_receive(db, ghl, body)
    assert first.status == 200 and first.body == {"stored": 1, "event_ids": ["wh-1"]}
    again = await ghl_receive(db, ghl, body)
    assert again.status == 200 and again.body["duplicate"] is True
    assert await count(db) == 1


async def test_without_webhook_id_the_body_hash_dedupes(db: Database, ghl: GHLWebhookSigner) -> None:
    body = json.dumps({**example("ContactCreate"), "timestamp": NOW.isoformat()}).encode()
    assert (await ghl_receive(db, ghl, body)).status == 200
    assert (await ghl_receive(db, ghl, body)).body["duplicate"] is True
    async with db.sessions() as s:
        row = (await s.execute(select(InboxEvent))).scalar_one()
    assert row.event_id.startswith("sha256:") and row.verified and row.event_type == "ContactCreate"


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("bad_signature", 401, "invalid GoHighLevel webhook signature"),
        ("no_signature", 401, "missing signature"),
        ("stale", 401, "stale"),
        ("future", 401, "future"),
        ("too_large", 413, "exceeds"),
        ("malformed", 400, "not valid JSON"),
        ("not_object", 400, "JSON object"),
        ("no_timestamp", 400, "no timestamp"),
    ],
)
async def test_refused_deliveries_are_not_stored(
    db: Database, ghl: GHLWebhookSigner, case: str, status: int, error: str
) -> None:
    ts = {"stale": NOW - timedelta(minutes=6), "future": NOW + timedelta(minutes=6)}.get(case, NOW)
    body = ghl_event_body(
        {"locationId": LOC, "type": "ContactUpdate", "id": "c1"}, timestamp=ts, webhook_id="w"
    )
    if case == "too_large":
        body = ghl_event_body(
            {"locationId": LOC, "type": "ContactUpdate", "pad": "x" * 300_000}, webhook_id="w"
        )
    elif case == "malformed":
        body = b'{"type": "ContactUpdate",'
    elif case == "not_object":
        body = b"[1, 2]"
    elif case == "no_timestamp":
        body = ghl_event_body({"locationId": LOC, "type": "ContactUpdate", "id": "c1"}, webhook_id="w")
    headers = ghl.headers(body)
    if case == "bad_signature":
        headers = ghl.headers(body + b" ")
    elif case == "no_signature":
        headers = {"content-type": "application/json"}
    receipt = await ghl_receive(db, ghl, body, headers=headers)
    assert receipt.status == status
    assert error in receipt.body["error"]
    assert await count(db) == 0


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"type": "ContactUpdate", "locationId": "SomeoneElsesLocation", "id": "c1"}, "another location"),
        ({"type": "ContactUpdate", "id": "c1"}, "names no location"),
        ({"type": "InvoiceCreate", "altType": "location", "altId": "SomeoneElsesLocation"}, "another"),
        ({"type": "LocationUpdate", "id": "SomeoneElsesLocation"}, "another location"),
    ],
)
async def test_ghl_event_for_another_location_is_refused(
    db: Database, ghl: GHLWebhookSigner, event: dict[str, Any], error: str
) -> None:
    """GoHighLevel signs every account's webhooks with one key: a valid signature is not enough."""
    body = ghl_event_body({**event, "dateUpdated": "2099-01-01T00:00:00Z"}, timestamp=NOW, webhook_id="f")
    receipt = await ghl_receive(db, ghl, body)
    assert receipt.status == 403 and error in receipt.body["error"]
    assert await count(db) == 0
    unbound = await ghl_receive(db, ghl, body, location_id=None)
    assert unbound.status == 403 and await count(db) == 0


async def test_ghl_invoice_and_location_events_bind_by_alt_id_and_id(
    db: Database, ghl: GHLWebhookSigner
) -> None:
    invoice = ghl_event_body(
        {"type": "InvoiceCreate", "altType": "location", "altId": LOC}, timestamp=NOW, webhook_id="i"
    )
    assert (await ghl_receive(db, ghl, invoice)).status == 200
    location = ghl_event_body({"type": "LocationUpdate", "id": LOC}, timestamp=NOW, webhook_id="l")
    assert (await ghl_receive(db, ghl, location)).status == 200


async def test_hubspot_event_for_another_portal_is_refused(db: Database) -> None:
    body = json.dumps(
        [
            {"eventId": 1, "portalId": 62515, "subscriptionId": 2, "occurredAt": 3},
            {"eventId": 2, "portalId": 99999, "subscriptionId": 2, "occurredAt": 3},
        ]
    ).encode()
    headers = hubspot_v3_headers("hs-secret-1", "POST", URL, body, timestamp=NOW)
    for opts in ({"client_secret": "hs-secret-1", "portal_id": "62515"}, {"client_secret": "hs-secret-1"}):
        r = await receive(
            db,
            provider="hubspot",
            connection="hubspot",
            options=opts,
            method="POST",
            url=URL,
            headers=headers,
            body=body,
            now=NOW,
        )
        assert r.status == 403, r.body
    assert await count(db) == 0


async def test_unknown_provider_is_404(db: Database) -> None:
    r = await receive(
        db,
        provider="salesforce",
        connection="x",
        options={},
        method="POST",
        url=URL,
        headers={},
        body=b"{}",
        now=NOW,
    )
    assert r.status == 404 and await count(db) == 0


async def test_storage_failure_asks_ghl_to_retry_with_429(db: Database, ghl: GHLWebhookSigner) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE inbox_events"))
    body = ghl_event_body(
        {"locationId": LOC, "type": "ContactCreate", "id": "c1"}, timestamp=NOW, webhook_id="w"
    )
    r = await ghl_receive(db, ghl, body)
    assert r.status == 429 and r.headers["Retry-After"]


async def test_hubspot_batch_one_row_per_event_and_redelivery(db: Database) -> None:
    events = [
        {
            "eventId": 1,
            "subscriptionId": 9,
            "portalId": 62515,
            "occurredAt": 1,
            "subscriptionType": "contact.creation",
            "objectId": 123,
        },
        {
            "eventId": 2,
            "subscriptionId": 9,
            "portalId": 62515,
            "occurredAt": 2,
            "subscriptionType": "contact.propertyChange",
            "objectId": 123,
        },
    ]
    body = json.dumps(events).encode()
    opts = {"client_secret": "hs-secret-1", "portal_id": "62515"}

    async def send(payload: bytes) -> Any:
        headers = hubspot_v3_headers("hs-secret-1", "POST", URL, payload, timestamp=NOW)
        return await receive(
            db,
            provider="hubspot",
            connection="hubspot",
            options=opts,
            method="POST",
            url=URL,
            headers=headers,
            body=payload,
            now=NOW,
        )

    assert (await send(body)).body["stored"] == 2
    assert (await send(body)).body["duplicate"] is True
    events.append({**events[0], "eventId": 3})
    partial = await send(json.dumps(events).encode())
    assert partial.body == {"stored": 1, "event_ids": ["62515:9:3:1"], "duplicates": 2}
    assert await count(db) == 3
    no_secret = await receive(
        db,
        provider="hubspot",
        connection="hubspot",
        options={},
        method="POST",
        url=URL,
        headers={},
        body=body,
        now=NOW,
    )
    assert no_secret.status == 401


async def test_hubspot_behind_a_proxy_uses_the_public_base_url(db: Database) -> None:
    body = json.dumps([{"eventId": 5, "portalId": 1, "subscriptionId": 2, "occurredAt": 3}]).encode()
    public = "https://crm.example.com/webhooks/hubspot/hs?x=1"
    headers = hubspot_v3_headers("k-123456", "POST", public, body, timestamp=NOW)
    internal = "http://10.0.0.5:8000/webhooks/hubspot/hs?x=1"
    opts: dict[str, Any] = {"client_secret": "k-123456", "portal_id": 1}
    args: dict[str, Any] = dict(
        provider="hubspot", connection="hs", method="POST", url=internal, headers=headers, body=body, now=NOW
    )
    assert (await receive(db, options=opts, **args)).status == 401
    opts["webhook_base_url"] = "https://crm.example.com/"
    assert (await receive(db, options=opts, **args)).status == 200


async def test_standard_webhooks_dedupe_on_webhook_id_and_rotation(db: Database) -> None:
    old, new = new_standard_secret(), new_standard_secret()
    opts = {"webhook_secrets": [old, new]}

    async def send(body: bytes, secret: str, msg_id: str, provider: str = "n8n") -> Any:
        headers = standard_webhook_headers(secret, body, msg_id=msg_id, timestamp=NOW)
        return await receive(
            db,
            provider=provider,
            connection="hooks",
            options=opts,
            method="POST",
            url=URL,
            headers=headers,
            body=body,
            now=NOW,
        )

    assert (await send(b'{"type": "lead.created"}', old, "msg_1")).status == 200
    # the retry carries the same webhook-id (signed now with the new secret): still a duplicate
    assert (await send(b'{"type": "lead.created"}', new, "msg_1")).body["duplicate"] is True
    assert (await send(b"[1]", new, "msg_2", provider="make")).status == 200
    assert (await send(b"{}", new_standard_secret(), "msg_3")).status == 401
    async with db.sessions() as s:
        rows = {r.event_id: r for r in (await s.execute(select(InboxEvent))).scalars()}
    assert set(rows) == {"msg_1", "msg_2"}
    assert rows["msg_2"].payload == {"data": [1]} and rows["msg_1"].event_type == "lead.created"


# -- processing -------------------------------------------------------------------------------


async def put(db: Database, payload: dict[str, Any], event_id: str, at: datetime = NOW) -> None:
    stored, _ = await store(
        db, "gohighlevel", "gohighlevel", [Incoming(event_id, payload["type"], payload)], at
    )
    assert stored


async def leads(db: Database) -> list[Lead]:
    async with db.sessions() as s:
        return list((await s.execute(select(Lead))).scalars())


async def appointments(db: Database) -> list[Appointment]:
    async with db.sessions() as s:
        return list((await s.execute(select(Appointment))).scalars())


async def test_official_contact_examples_upsert_one_lead(db: Database) -> None:
    await put(db, example("ContactCreate"), "e1")
    updated = {**example("ContactUpdate"), "phone": "+15550001111", "timestamp": "2026-03-01T11:00:00Z"}
    await put(db, updated, "e2")
    assert await process_pending(db, now=NOW) == 2
    [lead] = await leads(db)
    assert (lead.first_name, lead.last_name, lead.email) == ("John", "Deo", "JohnDeo@gmail.comm")
    assert lead.phone == "+15550001111" and lead.source == "xyz form"
    assert lead.data["crm_contact_id"] == "nmFmQEsNgz6AVpgLVUJ0"
    async with db.sessions() as s:
        ref = (await s.execute(select(ExternalRef).where(ExternalRef.local_type == "lead"))).scalar_one()
        done = list((await s.execute(select(InboxEvent.processed_at, InboxEvent.error))).all())
    assert ref.remote_type == "contact" and ref.local_id == lead.id
    assert done == [(NOW, None), (NOW, None)]
    assert await process_pending(db, now=NOW) == 0  # idempotent: nothing left


async def test_contact_matches_existing_lead_by_email(db: Database) -> None:
    async with db.begin_write() as s:
        s.add(
            Lead(id="L1", connection="gohighlevel", email="johndeo@gmail.comm", status="qualified", data={})
        )
    await put(db, example("ContactCreate"), "e1")
    await process_pending(db, now=NOW)
    [lead] = await leads(db)
    assert lead.id == "L1" and lead.first_name == "John" and lead.status == "qualified"


async def test_official_appointment_examples_create_update_delete(db: Database) -> None:
    await put(db, example("AppointmentCreate"), "a1")
    await process_pending(db, now=NOW)
    [appt] = await appointments(db)
    assert appt.status == "confirmed" and appt.source == "gohighlevel"
    assert appt.start_time == datetime(2023, 9, 25, 10, 30, tzinfo=UTC)
    assert appt.calendar_id == "BqTwX8QFwXzpegMve9EQ" and appt.title == "Appointment with GHL Dev team"
    async with db.sessions() as s:
        refs = {r.remote_type: r.remote_id for r in (await s.execute(select(ExternalRef))).scalars()}
    assert refs["appointment"] == "0007BWpSzSwfiuSl0tR2" and refs["contact"] == "9NkT25Vor1v4aQatFsv2"

    upd = example("AppointmentUpdate")
    upd["appointment"] = {**upd["appointment"], "title": "Moved", "dateUpdated": "2023-09-26T10:00:00Z"}
    await put(db, upd, "a2")
    dele = example("AppointmentDelete")
    dele["appointment"] = {**dele["appointment"], "dateUpdated": "2023-09-27T10:00:00Z"}
    await put(db, dele, "a3")
    await process_pending(db, now=NOW)
    [appt] = await appointments(db)
    assert (appt.title, appt.status, appt.version) == ("Moved", "cancelled", 3)


async def test_late_older_update_never_overwrites_newer(db: Database) -> None:
    base = example("AppointmentUpdate")
    newer = {
        **base,
        "appointment": {**base["appointment"], "title": "newer", "dateUpdated": "2023-09-26T12:00:00Z"},
    }
    older = {
        **base,
        "appointment": {**base["appointment"], "title": "older", "dateUpdated": "2023-09-26T11:00:00Z"},
    }
    await put(db, newer, "n")
    await put(db, older, "o")
    report = await process_pending_report(db, now=NOW)
    assert (report.processed, report.stale) == (2, 1)
    [appt] = await appointments(db)
    assert appt.title == "newer"

    c = example("ContactUpdate")
    await put(db, {**c, "phone": "+1999", "timestamp": "2026-03-01T11:59:00Z"}, "cn")
    await put(db, {**c, "phone": "+1000", "timestamp": "2026-03-01T11:58:00Z"}, "co")
    await process_pending(db, now=NOW)
    [lead] = await leads(db)
    assert lead.phone == "+1999"


async def test_delete_that_overtakes_its_create_stays_cancelled(db: Database) -> None:
    create, dele = example("AppointmentCreate"), example("AppointmentDelete")
    dele["appointment"] = {**dele["appointment"], "dateUpdated": "2023-09-25T17:00:00+05:30"}
    await put(db, dele, "d")
    await put(db, create, "c")
    await process_pending(db, now=NOW)
    [appt] = await appointments(db)
    assert appt.status == "cancelled"


async def enqueue_local_status(db: Database, appt_id: str, status: str, at: datetime) -> None:
    async with db.begin_write() as s:
        await outbox.enqueue(
            s,
            idempotency_key=f"k-{appt_id}-{status}",
            connection="gohighlevel",
            action="appointment.status",
            payload={"appointment_id": appt_id, "action": "update", "changes": {"status": status}},
            entity_type="appointment",
            entity_id=appt_id,
            now=at,
        )
        appt = await s.get(Appointment, appt_id)
        assert appt is not None
        appt.status = status


async def test_conflicting_status_uses_status_priority(db: Database) -> None:
    base = example("AppointmentUpdate")
    await put(db, base, "a1")
    await process_pending(db, now=NOW)
    [appt] = await appointments(db)
    # locally completed (not yet delivered); the CRM then says "confirmed" again -> completed stays
    await enqueue_local_status(db, appt.id, "completed", NOW)
    later = {**base, "appointment": {**base["appointment"], "dateUpdated": "2026-03-01T12:30:00Z"}}
    await put(db, later, "a2")
    report = await process_pending_report(db, now=NOW)
    [appt] = await appointments(db)
    assert appt.status == "completed"
    [conflict] = report.conflicts
    assert (conflict.field, conflict.local_value, conflict.remote_value) == (
        "status",
        "completed",
        "confirmed",
    )
    assert conflict.resolution.winner == "local"


async def test_manual_review_parks_both_values_on_the_event(db: Database) -> None:
    base = example("AppointmentUpdate")
    await put(db, base, "a1")
    await process_pending(db, now=NOW)
    [appt] = await appointments(db)
    await enqueue_local_status(db, appt.id, "scheduled", NOW)
    cancelled = {
        **base,
        "appointment": {
            **base["appointment"],
            "appointmentStatus": "cancelled",
            "dateUpdated": "2026-03-01T12:30:00Z",
        },
    }
    await put(db, cancelled, "a2")
    report = await process_pending_report(db, now=NOW, policies={"appointment.status": "manual_review"})
    assert report.conflicts[0].resolution.needs_review
    [appt] = await appointments(db)
    assert appt.status == "scheduled"
    async with db.sessions() as s:
        ev = (await s.execute(select(InboxEvent).where(InboxEvent.event_id == "a2"))).scalar_one()
    assert ev.processed_at == NOW and ev.error is not None
    assert "needs_review" in ev.error and "'scheduled'" in ev.error and "'cancelled'" in ev.error


async def test_unappliable_event_is_marked_with_redacted_error(db: Database) -> None:
    await put(db, {"type": "ContactUpdate", "email": "x@y.z", "note": "api_key=sk_live_canary123"}, "bad")
    await put(db, {"type": "AppointmentCreate", "appointment": {"id": "api_key=sk_live_canary123"}}, "bad2")
    await put(db, {"type": "OpportunityCreate", "id": "o1"}, "other")
    report = await process_pending_report(db, now=NOW)
    assert (report.processed, report.failed) == (1, 2)
    async with db.sessions() as s:
        rows = {r.event_id: r for r in (await s.execute(select(InboxEvent))).scalars()}
    assert all(r.processed_at == NOW for r in rows.values())
    assert rows["bad"].error and rows["bad"].error.startswith("KeyError")
    assert rows["bad2"].error and "startTime" in rows["bad2"].error
    assert "canary" not in rows["bad2"].error
    assert rows["other"].error is None
    assert await process_pending(db, now=NOW) == 0

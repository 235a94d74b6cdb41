"""HubSpotConnector against the HubSpot simulator over real loopback HTTP (no mocked network).

Both sides run on one virtual clock: the simulator's windows and token expiry read `fake.wall`,
the connector's limiter and backoff read `fake.clock` and sleep with `fake.sleep`, which moves
that clock — so nothing here sleeps on wall time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from crm_mcp.connectors.base import Appointment, Contact, Note, Task
from crm_mcp.errors import AuthError, InvalidRequestError, NotFoundError, UpstreamUnavailableError
from crm_mcp.providers.hubspot.connector import HubSpotConnector
from crm_mcp.providers.hubspot.sandbox import (
    SANDBOX_PORTAL_ID,
    SANDBOX_TOKEN,
    HubSpotSandbox,
)
from crm_mcp.sandbox.runner import SandboxServer
from tests.providers.support import FakeTime, NoJitter

START = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


def make(served: tuple[HubSpotSandbox, SandboxServer], fake: FakeTime, **kw: Any) -> HubSpotConnector:
    opts: dict[str, Any] = {"token": SANDBOX_TOKEN, "portal_id": SANDBOX_PORTAL_ID, **kw}
    return HubSpotConnector(
        "test", base_url=served[1].url, clock=fake.clock, sleep=fake.sleep, rng=NoJitter(), **opts
    )


@pytest.fixture
async def conn(
    sandbox: HubSpotSandbox, served: tuple[HubSpotSandbox, SandboxServer], fake: FakeTime
) -> AsyncIterator[HubSpotConnector]:
    c = make(served, fake)
    yield c
    await c.aclose()


# -- contacts ---------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_create_get_update_and_upsert_is_idempotent(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    await conn.ping()
    made, created = await conn.upsert_contact(
        Contact(
            first_name="Ada",
            last_name="Lovelace",
            email="ada@example.com",
            phone="+1 555 0100",
            company_name="Engines",
        )
    )
    assert created and made.id and made.email == "ada@example.com"
    again, created_again = await conn.upsert_contact(Contact(email="ada@example.com", last_name="King"))
    assert (again.id, created_again) == (made.id, False)
    same, _ = await conn.upsert_contact(Contact(email="ada@example.com", last_name="King"))
    assert same.id == made.id
    got = await conn.get_contact(made.id)
    assert (got.first_name, got.last_name, got.company_name, got.phone) == (
        "Ada",
        "King",
        "Engines",
        "+1 555 0100",
    )
    assert got.date_added is not None
    assert sandbox.contact_count() == 1


@pytest.mark.anyio
async def test_duplicate_email_409_updates_the_existing_contact_never_a_second(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    (existing,) = sandbox.seed_contacts([{"email": "bcooper@biglytics.net", "firstname": "Bryan"}])
    saved, created = await conn.upsert_contact(Contact(email="BCooper@Biglytics.net", last_name="Cooper"))
    assert (saved.id, created, saved.first_name, saved.last_name) == (existing, False, "Bryan", "Cooper")
    assert sandbox.contact_count() == 1
    assert sandbox.stats["by_status"]["409"] == 1
    # many writers racing on one new email still make one contact
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(conn.upsert_contact, Contact(email="race@example.com", first_name=f"R{i}"))
    assert sandbox.contact_count() == 2


@pytest.mark.anyio
async def test_phone_only_contacts_are_found_by_phone(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    first, created = await conn.upsert_contact(Contact(phone="+1 555 0199", first_name="Pho"))
    second, created_again = await conn.upsert_contact(Contact(phone="+1 555 0199", last_name="Ne"))
    assert created and not created_again and first.id == second.id
    assert sandbox.contact_count() == 1
    with pytest.raises(InvalidRequestError, match="email or a phone"):
        await conn.upsert_contact(Contact(first_name="Nobody"))


@pytest.mark.anyio
async def test_search_pages_to_the_end(conn: HubSpotConnector, sandbox: HubSpotSandbox) -> None:
    sandbox.seed_contacts([{"email": f"pat{i}@example.com", "firstname": "Pat"} for i in range(23)])
    sandbox.seed_contacts([{"email": "other@example.com", "firstname": "Other"}])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await conn.search_contacts("pat", 10, cursor)
        pages += 1
        assert page.total == 23
        seen += [str(c.email) for c in page.contacts]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == sorted(f"pat{i}@example.com" for i in range(23))
    everyone = await conn.search_contacts(None, 500, None)  # above HubSpot's 200: clamped, still paged
    assert everyone.total == 24 and len(everyone.contacts) == 24 and everyone.next_cursor is None
    with pytest.raises(InvalidRequestError):
        await conn.search_contacts(None, 0, None)
    with pytest.raises(InvalidRequestError):
        await conn.search_contacts(None, 10, "not-a-cursor")


@pytest.mark.anyio
async def test_search_stops_at_the_10000_result_ceiling(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    sandbox.seed_contacts({"email": f"p{i}@example.com"} for i in range(10_050))
    page = await conn.search_contacts(None, 200, "9900")
    assert page.total == 10_050 and len(page.contacts) == 100 and page.next_cursor is None
    with pytest.raises(InvalidRequestError):
        await conn.search_contacts(None, 10, "10000")
    assert sandbox.stats["by_status"].get("400") is None  # never asked HubSpot past the ceiling


@pytest.mark.anyio
async def test_custom_fields_by_logical_name(conn: HubSpotConnector, sandbox: HubSpotSandbox) -> None:
    core = {f.key for f in conn.contact_fields()}
    assert {"email", "firstname", "hs_lead_status"} <= core
    made, _ = await conn.upsert_contact(
        Contact(email="cf@example.com", custom_fields={"lead_score": 87.0, "appointment_status": "cancelled"})
    )
    assert made.custom_fields == {"crm_mcp_lead_score": "87", "crm_mcp_appointment_status": "cancelled"}
    await conn.set_contact_fields(
        made.id or "",
        {
            "next_appointment_date": datetime(2026, 3, 1, 20, 0, tzinfo=UTC),
            "lead_status": "qualified",
            "appointment_status": "showed",  # not an option of the picklist, and no synonym: skipped
            "no_such_field": "x",  # not a property of the portal: skipped
        },
    )
    got = await conn.get_contact(made.id or "")
    assert got.custom_fields == {
        "crm_mcp_lead_score": "87",
        "crm_mcp_appointment_status": "cancelled",
        "crm_mcp_next_appointment_date": "2026-03-01",
        "hs_lead_status": "OPEN",
    }
    custom = await conn.list_custom_fields()
    assert {f.key for f in custom} == {
        "crm_mcp_appointment_status",
        "crm_mcp_next_appointment_date",
        "crm_mcp_lead_score",
    }
    assert all(f.custom for f in custom)
    status = next(f for f in custom if f.key == "crm_mcp_appointment_status")
    assert status.options == ["scheduled", "confirmed", "cancelled", "completed", "no_show"]
    standard = conn.contact_fields()
    assert "lifecyclestage" in {f.key for f in standard} and not any(f.custom for f in standard)


# -- notes, tasks, meetings -------------------------------------------------------------------
@pytest.mark.anyio
async def test_notes_and_tasks_are_associated_and_listed_back(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    contact, _ = await conn.upsert_contact(Contact(email="act@example.com"))
    other, _ = await conn.upsert_contact(Contact(email="else@example.com"))
    cid = contact.id or ""
    for i in range(3):
        note = await conn.add_note(Note(contact_id=cid, body=f"note {i}"))
        assert note.id and note.contact_id == cid
    await conn.add_note(Note(contact_id=other.id or "", body="someone else's"))
    task = await conn.create_task(Task(contact_id=cid, title="Call back", body="re: tour", due_date=START))
    done = await conn.create_task(Task(contact_id=cid, title="Send lease", due_date=START, completed=True))
    assert task.id and not task.completed and done.completed
    assert [n.body for n in await conn.list_notes(cid)] == ["note 0", "note 1", "note 2"]
    tasks = await conn.list_tasks(cid)
    assert [(t.title, t.body, t.completed, t.due_date) for t in tasks] == [
        ("Call back", "re: tour", False, START),
        ("Send lease", None, True, START),
    ]
    assert await conn.list_notes("999999") == []


@pytest.mark.anyio
async def test_meetings_map_status_changes_to_outcomes(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    contact, _ = await conn.upsert_contact(Contact(email="meet@example.com"))
    cid = contact.id or ""

    def outcome(meeting_id: str) -> str:
        (row,) = [m for m in sandbox.snapshot()["meetings"] if m["id"] == meeting_id]
        return str(row["properties"]["hs_meeting_outcome"])

    made = await conn.create_appointment(
        Appointment(
            contact_id=cid,
            start_time=START,
            end_time=START + timedelta(hours=1),
            title="Tour",
            notes="Unit 2B",
        )
    )
    assert (
        made.id
        and made.status == "confirmed"
        and made.calendar_id is None
        and outcome(made.id) == "SCHEDULED"
    )
    got = await conn.get_appointment(made.id)
    assert (got.contact_id, got.title, got.notes, got.start_time, got.status) == (
        cid,
        "Tour",
        "Unit 2B",
        START,
        "scheduled",
    )
    for status, wire_outcome in [
        ("cancelled", "CANCELED"),
        ("completed", "COMPLETED"),
        ("no_show", "NO_SHOW"),
    ]:
        updated = await conn.update_appointment(made.id, {"status": status})
        assert (updated.status, outcome(made.id), updated.contact_id) == (status, wire_outcome, cid)
    moved = await conn.update_appointment(
        made.id, {"status": "confirmed", "start_time": START + timedelta(days=1)}
    )
    assert (moved.status, moved.start_time, outcome(made.id)) == (
        "confirmed",
        START + timedelta(days=1),
        "SCHEDULED",
    )
    second = await conn.create_appointment(
        Appointment(contact_id=cid, start_time=START - timedelta(days=1), status="scheduled")
    )
    listed = await conn.list_contact_appointments(cid)
    assert [a.id for a in listed] == [second.id, made.id]
    with pytest.raises(InvalidRequestError):
        await conn.update_appointment(made.id, {"calendar_id": "x"})
    with pytest.raises(NotFoundError):
        await conn.get_appointment("424242")


# -- batch ------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_batch_upsert_207_partial_failure_is_per_item(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    (old,) = sandbox.seed_contacts([{"email": "old@example.com", "firstname": "Old"}])
    items = await conn.upsert_contacts(
        [
            Contact(email="new@example.com", first_name="New"),
            Contact(email="not-an-email"),
            Contact(email="Old@Example.com", last_name="Timer", custom_fields={"lead_score": 5}),
            Contact(phone="+1 555 0142"),  # no email: upserted on its own, by phone
        ]
    )
    assert [i.index for i in items] == [0, 1, 2, 3]
    assert items[0].created and items[0].contact and items[0].contact.first_name == "New"
    assert items[1].contact is None and items[1].error and "INVALID_EMAIL" in items[1].error
    assert not items[2].created and items[2].contact and items[2].contact.id == old
    assert items[2].contact.custom_fields["crm_mcp_lead_score"] == "5"
    assert items[3].created and items[3].contact and items[3].contact.phone == "+1 555 0142"
    assert sandbox.contact_count() == 3
    assert sandbox.stats["by_status"]["207"] == 1


@pytest.mark.anyio
async def test_batch_upsert_chunks_by_100_and_splits_repeated_emails(
    conn: HubSpotConnector, sandbox: HubSpotSandbox
) -> None:
    contacts = [Contact(email=f"b{i}@example.com") for i in range(230)]
    contacts.append(Contact(email="B0@example.com", first_name="Last write"))
    items = await conn.upsert_contacts(contacts)
    assert len(items) == 231 and all(i.error is None for i in items)
    assert sum(i.created for i in items) == 230
    assert sandbox.contact_count() == 230
    assert sandbox.stats["by_route"]["POST /crm/v3/objects/contacts/batch/upsert"] == 3
    first = next(c for c in sandbox.contacts() if c["properties"]["email"] == "b0@example.com")
    assert first["properties"]["firstname"] == "Last write"


# -- errors, retries, redaction ---------------------------------------------------------------
@pytest.mark.anyio
async def test_error_mapping(
    conn: HubSpotConnector, sandbox: HubSpotSandbox, served: Any, fake: FakeTime
) -> None:
    with pytest.raises(NotFoundError) as nf:
        await conn.get_contact("987654")
    assert nf.value.status == 404 and nf.value.request_id  # HubSpot's correlation id
    with pytest.raises(InvalidRequestError) as bad:
        await conn.upsert_contact(Contact(email="bad@"))
    assert bad.value.status == 400 and "INVALID_EMAIL" in bad.value.message
    wrong = make(served, fake, token="pat-na1-00000000-0000-0000-0000-000000000000")
    try:
        with pytest.raises(AuthError) as denied:
            await wrong.ping()
        assert denied.value.status == 401
    finally:
        await wrong.aclose()


@pytest.mark.anyio
async def test_retries_only_what_is_safe(
    conn: HubSpotConnector, sandbox: HubSpotSandbox, fake: FakeTime
) -> None:
    contact, _ = await conn.upsert_contact(Contact(email="retry@example.com"))
    sandbox.faults.set("rate_limit", count=1, retry_after=2)
    assert (await conn.get_contact(contact.id or "")).id == contact.id
    assert 2.0 in fake.sleeps  # Retry-After honoured on the virtual clock
    sandbox.faults.set("error", status=503, count=1)
    assert (await conn.get_contact(contact.id or "")).id == contact.id  # a read: re-sent
    sandbox.faults.set("error", status=503, count=1, path="/crm/v3/objects/notes$")
    with pytest.raises(UpstreamUnavailableError):
        await conn.add_note(Note(contact_id=contact.id or "", body="once"))  # a create: never re-sent
    assert sandbox.stats["by_route"]["POST /crm/v3/objects/notes"] == 1


@pytest.mark.anyio
async def test_the_token_never_appears_in_errors(
    sandbox: HubSpotSandbox, served: Any, fake: FakeTime
) -> None:
    canary = "pat-na1-canary00-7777-4e38-9c2f-5a4d0b7e9f10"
    c = make(served, fake, token=canary)
    try:
        with pytest.raises(AuthError) as denied:
            await c.get_contact("1")
        sandbox.faults.set("error", status=500)
        with pytest.raises(UpstreamUnavailableError) as down:
            await c.search_contacts(canary, 10, None)  # the secret even travels in the request body
        texts = [
            str(denied.value),
            denied.value.message,
            str(down.value),
            repr(down.value),
            str(c.snapshot()),
        ]
        assert all(canary not in t for t in texts)
    finally:
        sandbox.faults.clear()
        await c.aclose()


@pytest.mark.anyio
async def test_appointment_fields_are_meeting_properties(conn: HubSpotConnector) -> None:
    fields = {f.key: f for f in conn.appointment_fields()}
    assert {"hs_meeting_start_time", "hs_meeting_outcome", "hs_meeting_title"} <= set(fields)
    assert fields["hs_meeting_outcome"].options == [
        "SCHEDULED",
        "COMPLETED",
        "RESCHEDULED",
        "NO_SHOW",
        "CANCELED",
    ]
    assert fields["hs_timestamp"].required and not any(f.custom for f in fields.values())

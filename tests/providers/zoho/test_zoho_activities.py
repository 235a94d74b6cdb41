"""What the call-log pipeline and the tools write on a Zoho lead or contact, over real HTTP:
Calls (type, start, duration, subject, description, What_Id/Who_Id, Owner), attachments by
multipart upload, notes with the v7/v8 Parent_Id, tasks, and events as appointments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_mcp.connectors.base import (
    Appointment,
    Attachments,
    CallActivities,
    CallActivity,
    Note,
    PhoneLookup,
    Task,
    require,
)
from crm_mcp.errors import InvalidRequestError, NotFoundError
from crm_mcp.providers.zoho.connector import ZohoConnector
from crm_mcp.providers.zoho.sandbox import ZohoSandbox

pytestmark = pytest.mark.anyio
START = datetime(2026, 3, 2, 14, 5, 30, tzinfo=UTC)


def seed(sim: ZohoSandbox, module: str, record: dict[str, Any]) -> str:
    with sim.lock:
        return str(sim.store.insert(module, record, 0).details["id"])


def call(contact_id: str, **kw: Any) -> CallActivity:
    values: dict[str, Any] = {
        "contact_id": contact_id,
        "direction": "inbound",
        "result": "answered",
        "started_at": START,
        "duration_seconds": 754,
        "subject": "Inbound call from +15550100001",
        "description": "Answered by ext. 101",
        "owner_id": "4876876000000333001",
        "external_id": "rc-session-1",
    }
    return CallActivity(**{**values, **kw})


async def test_the_pipeline_capabilities_are_there(zoho: ZohoConnector) -> None:
    for proto in (PhoneLookup, CallActivities, Attachments):
        assert require(zoho, proto) is zoho


async def test_a_call_on_a_lead_and_on_a_contact(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    lead = seed(sim, "Leads", {"Last_Name": "Lead"})
    contact = seed(sim, "Contacts", {"Last_Name": "Contact"})
    logged = await zoho.log_call(call(lead))
    assert logged.id
    row = sim.store.tables["Calls"][logged.id]
    assert row["What_Id"] == {"id": lead} and row["$se_module"] == "Leads" and "Who_Id" not in row
    assert (row["Call_Type"], row["Call_Duration"], row["Owner"]) == (
        "Inbound",
        "12:34",
        {"id": "4876876000000333001"},
    )
    assert row["Call_Start_Time"] == "2026-03-02T14:05:30+00:00"
    assert row["Subject"] == "Inbound call from +15550100001"
    missed = await zoho.log_call(
        call(f"Contacts:{contact}", result="missed", duration_seconds=0, external_id="rc-2")
    )
    row = sim.store.tables["Calls"][str(missed.id)]
    assert row["Who_Id"] == {"id": contact} and "What_Id" not in row
    assert (row["Call_Type"], row["Call_Duration"]) == ("Missed", "00:00")
    back = await zoho.find_call(f"Contacts:{contact}", "rc-2")
    assert back is not None and back.id == missed.id
    assert (back.result, back.contact_id, back.external_id) == ("missed", f"Contacts:{contact}", "rc-2")
    assert await zoho.find_call(lead, "rc-2") is None


async def test_a_call_is_updated_in_place_when_its_recording_arrives(
    zoho: ZohoConnector, sim: ZohoSandbox
) -> None:
    lead = seed(sim, "Leads", {"Last_Name": "Lead"})
    logged = await zoho.log_call(call(lead, owner_id=None))
    updated = await zoho.update_call(
        str(logged.id),
        {"description": "Answered; recording attached", "owner_id": "42", "duration_seconds": 61},
    )
    assert (updated.id, updated.description, updated.owner_id, updated.duration_seconds) == (
        logged.id,
        "Answered; recording attached",
        "42",
        61,
    )
    assert updated.external_id == "rc-session-1"  # the reference line survives the new description
    assert len(sim.store.tables["Calls"]) == 1
    found = await zoho.find_call(lead, "rc-session-1")
    assert found is not None and found.description == "Answered; recording attached"
    reads = sim.stats["GET /Calls/{id}"]
    again = await zoho.update_call(str(logged.id), {"description": "v3", "external_id": "rc-session-1"})
    assert (again.description, again.external_id) == ("v3", "rc-session-1")
    assert sim.stats["GET /Calls/{id}"] == reads + 1  # only the read of the saved call
    with pytest.raises(InvalidRequestError):
        await zoho.update_call(str(logged.id), {"direction": "outbound"})


async def test_a_recording_is_uploaded_as_a_multipart_attachment(
    zoho: ZohoConnector, sim: ZohoSandbox
) -> None:
    contact = seed(sim, "Contacts", {"Last_Name": "Contact"})
    audio = bytes(range(256)) * 40
    attachment = await zoho.attach_file(f"Contacts:{contact}", "call-rc-1.mp3", audio, "audio/mpeg")
    stored = sim.store.attachments[attachment]
    assert (stored["content"], stored["File_Name"], stored["content_type"]) == (
        audio,
        "call-rc-1.mp3",
        "audio/mpeg",
    )
    assert stored["$se_module"] == "Contacts" and stored["Parent_Id"] == {"id": contact}
    assert await zoho.find_attachment(f"Contacts:{contact}", "call-rc-1.mp3") == attachment
    assert await zoho.find_attachment(f"Contacts:{contact}", "other.mp3") is None
    zoho.max_attachment_bytes = 100
    with pytest.raises(InvalidRequestError):
        await zoho.attach_file(f"Contacts:{contact}", "big.mp3", audio, "audio/mpeg")
    assert len(sim.store.attachments) == 1


@pytest.mark.parametrize("version", ["v8", "v7"])
async def test_notes_name_their_parent_module(make: Any, sim: ZohoSandbox, version: str) -> None:
    conn: ZohoConnector = make(api_version=version)
    lead = seed(sim, "Leads", {"Last_Name": "Lead"})
    note = await conn.add_note(Note(contact_id=lead, body="Interested in 2BR\nCall back Monday"))
    row = sim.store.tables["Notes"][str(note.id)]
    assert row["Parent_Id"] == {"module": {"api_name": "Leads"}, "id": lead}
    assert row["Note_Title"] == "Interested in 2BR"
    assert [n.body for n in await conn.list_notes(lead)] == ["Interested in 2BR\nCall back Monday"]
    assert sim.stats["POST /Notes"] == 1
    assert conn.client.snapshot()["connection"] == "zoho"


async def test_tasks_and_events(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    contact = f"Contacts:{seed(sim, 'Contacts', {'Last_Name': 'Contact'})}"
    task = await zoho.create_task(Task(contact_id=contact, title="Call back", due_date=START, body="missed"))
    assert [t.id for t in await zoho.list_tasks(contact)] == [task.id]
    assert sim.store.tables["Tasks"][str(task.id)]["Due_Date"] == "2026-03-02"
    made = await zoho.create_appointment(
        Appointment(contact_id=contact, start_time=START, end_time=START + timedelta(hours=1), title="Tour")
    )
    assert made.id and sim.store.tables["Events"][made.id]["Appointment_Status"] == "Confirmed"
    cancelled = await zoho.update_appointment(made.id, {"status": "cancelled"})
    assert (cancelled.status, cancelled.contact_id, cancelled.title) == ("cancelled", contact, "Tour")
    assert [a.id for a in await zoho.list_contact_appointments(contact)] == [made.id]
    with pytest.raises(NotFoundError):
        await zoho.get_appointment("4876876000000000002")

"""Calendars, free slots, appointments and location metadata of the GoHighLevel simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
)
from crm_mcp.sandbox.runner import SandboxServer

LOC = SANDBOX_LOCATION_ID
CAL = SANDBOX_CALENDAR_ID
NY = ZoneInfo("America/New_York")
MONDAY = datetime(2030, 1, 7, tzinfo=NY)  # a Monday, far from "now"
AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
CALENDARS = {**AUTH, "Version": "2021-04-15"}
CONTACTS = {**AUTH, "Version": "2021-07-28"}


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GHLSandbox, SandboxServer]]:
    sandbox, server = start_ghl_sandbox()
    yield sandbox, server
    server.stop()


@pytest.fixture
async def api(served: tuple[GHLSandbox, SandboxServer]) -> AsyncIterator[httpx2.AsyncClient]:
    sandbox, server = served
    sandbox.reset()
    async with httpx2.AsyncClient(base_url=server.url, headers=CALENDARS, timeout=5) as client:
        yield client


async def new_contact(api: httpx2.AsyncClient, email: str = "tour@example.com") -> str:
    r = await api.post("/contacts/", headers=CONTACTS, json={"locationId": LOC, "email": email})
    assert r.status_code == 201
    return str(r.json()["contact"]["id"])


async def book(api: httpx2.AsyncClient, contact_id: str, start: datetime, **extra: Any) -> httpx2.Response:
    body = {
        "calendarId": CAL,
        "locationId": LOC,
        "contactId": contact_id,
        "startTime": start.isoformat(),
        **extra,
    }
    return await api.post("/calendars/events/appointments", json=body)


@pytest.mark.anyio
async def test_location_calendars_and_custom_fields(api: httpx2.AsyncClient) -> None:
    r = await api.get("/calendars/", params={"locationId": LOC})
    assert r.status_code == 200
    calendars = r.json()["calendars"]
    assert len(calendars) == 2 and calendars[0]["id"] == CAL
    assert {"openHours", "slotDuration", "name", "locationId"} <= set(calendars[0])
    r = await api.get(f"/locations/{LOC}/customFields", params={"model": "contact"}, headers=CONTACTS)
    fields = {f["fieldKey"]: f for f in r.json()["customFields"]}
    assert fields["contact.appointment_status"]["dataType"] == "SINGLE_OPTIONS"
    assert fields["contact.appointment_status"]["picklistOptions"]
    assert fields["contact.next_appointment_date"]["dataType"] == "DATE"
    assert {f["dataType"] for f in fields.values()} >= {"NUMERICAL", "MONETORY", "DATE"}
    assert all(f["model"] == "contact" for f in fields.values())
    everything = (await api.get(f"/locations/{LOC}/customFields", headers=CONTACTS)).json()["customFields"]
    assert len(everything) > len(fields)
    r = await api.get(f"/locations/{LOC}", headers=CONTACTS)
    assert r.json()["location"]["timezone"] == "America/New_York"
    assert (await api.get("/locations/OtherLocation0000001", headers=CONTACTS)).status_code == 403
    # calendars need their own Version, contacts theirs.
    assert (await api.get("/calendars/", params={"locationId": LOC}, headers=CONTACTS)).status_code == 400


@pytest.mark.anyio
async def test_free_slots_follow_open_hours_and_bookings(api: httpx2.AsyncClient) -> None:
    params = {"startDate": ms(MONDAY), "endDate": ms(MONDAY + timedelta(days=7) - timedelta(seconds=1))}
    r = await api.get(f"/calendars/{CAL}/free-slots", params=params)
    assert r.status_code == 200
    days = {k: v["slots"] for k, v in r.json().items() if k != "traceId"}
    assert sorted(days) == [f"2030-01-{d:02d}" for d in range(7, 12)]  # Mon-Fri only
    assert len(days["2030-01-07"]) == 16
    assert days["2030-01-07"][0] == "2030-01-07T09:00:00-05:00"
    cid = await new_contact(api)
    assert (await book(api, cid, MONDAY.replace(hour=10))).status_code == 200
    monday = (await api.get(f"/calendars/{CAL}/free-slots", params=params)).json()["2030-01-07"]["slots"]
    assert "2030-01-07T10:00:00-05:00" not in monday
    assert len(monday) == 15
    r = await api.get(f"/calendars/{CAL}/free-slots", params={**params, "timezone": "America/Chicago"})
    assert r.json()["2030-01-07"]["slots"][0] == "2030-01-07T08:00:00-06:00"
    too_long = {"startDate": ms(MONDAY), "endDate": ms(MONDAY + timedelta(days=40))}
    assert (await api.get(f"/calendars/{CAL}/free-slots", params=too_long)).status_code == 422
    assert (await api.get("/calendars/NoSuchCalendar000000/free-slots", params=params)).status_code == 404


@pytest.mark.anyio
async def test_appointment_lifecycle(api: httpx2.AsyncClient) -> None:
    cid = await new_contact(api)
    start = MONDAY.replace(hour=9, minute=30)
    r = await book(api, cid, start, title="Tour", appointmentStatus="confirmed")
    assert r.status_code == 200  # not 201
    flat = r.json()
    assert "event" not in flat and flat["contactId"] == cid and flat["calendarId"] == CAL
    assert flat["startTime"] == "2030-01-07T09:30:00-05:00"
    assert flat["endTime"] == "2030-01-07T10:00:00-05:00"
    event_id = flat["id"]
    clash = await book(api, await new_contact(api, "other@example.com"), start.astimezone(ZoneInfo("UTC")))
    assert clash.status_code == 400
    assert clash.json()["message"] == "The slot you have selected is no longer available"
    forced = await book(api, cid, start, ignoreFreeSlotValidation=True)
    assert forced.status_code == 200
    r = await api.put(
        f"/calendars/events/appointments/{event_id}",
        json={"startTime": start.replace(hour=11, minute=0).isoformat()},
    )
    assert r.status_code == 200 and r.json()["startTime"] == "2030-01-07T11:00:00-05:00"
    r = await api.put(f"/calendars/events/appointments/{event_id}", json={"appointmentStatus": "showed"})
    assert r.json()["appointmentStatus"] == "showed"
    r = await api.get(f"/calendars/events/appointments/{event_id}")
    event = r.json()["event"]
    assert event["id"] == event_id and event["appointmentStatus"] == "showed"
    assert event["dateAdded"].endswith("-05:00") or event["dateAdded"].endswith("-04:00")
    window = {
        "locationId": LOC,
        "calendarId": CAL,
        "startTime": ms(MONDAY),
        "endTime": ms(MONDAY + timedelta(days=1)),
    }
    assert len((await api.get("/calendars/events", params=window)).json()["events"]) == 2
    del window["calendarId"]
    assert (await api.get("/calendars/events", params=window)).status_code == 422
    r = await api.get(f"/contacts/{cid}/appointments", headers=CONTACTS)
    assert {e["id"] for e in r.json()["events"]} == {event_id, forced.json()["id"]}
    r = await api.delete(f"/calendars/events/{event_id}")
    assert (r.status_code, r.json()) == (201, {"succeeded": True})
    assert (await api.get(f"/calendars/events/appointments/{event_id}")).status_code == 404


@pytest.mark.anyio
async def test_appointment_validation(api: httpx2.AsyncClient) -> None:
    cid = await new_contact(api)
    r = await api.post("/calendars/events/appointments", json={"calendarId": CAL, "locationId": LOC})
    assert r.status_code == 422
    assert any("contactId" in m for m in r.json()["message"])
    assert any("startTime" in m for m in r.json()["message"])
    assert (await book(api, cid, MONDAY.replace(hour=10), notes="x")).status_code == 422  # not in the DTO
    assert (await book(api, "NoSuchContact0000000", MONDAY.replace(hour=10))).status_code == 400
    r = await api.post(
        "/calendars/events/appointments",
        json={
            "calendarId": "NoSuchCalendar000000",
            "locationId": LOC,
            "contactId": cid,
            "startTime": "2030-01-07T10:00:00Z",
        },
    )
    assert r.status_code == 400
    assert (await book(api, cid, MONDAY.replace(hour=3))).status_code == 400  # outside open hours
    assert (await book(api, cid, MONDAY.replace(hour=3), ignoreFreeSlotValidation=True)).status_code == 200
    assert (await book(api, cid, MONDAY.replace(hour=12), appointmentStatus="maybe")).status_code == 422

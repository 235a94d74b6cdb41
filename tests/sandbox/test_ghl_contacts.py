"""The GoHighLevel simulator's contacts surface, over real HTTP: envelopes, status codes, quirks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN, GHLSandbox
from crm_mcp.sandbox.runner import SandboxServer

LOC = SANDBOX_LOCATION_ID
HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKEN}", "Version": "2021-07-28"}
STATUS_FIELD = "SbxCf000000000000001"  # Appointment Status (SINGLE_OPTIONS)
SCORE_FIELD = "SbxCf000000000000003"  # Lead Score (NUMERICAL)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GHLSandbox, SandboxServer]]:
    sandbox, server = start_ghl_sandbox()
    yield sandbox, server
    server.stop()


@pytest.fixture
async def api(served: tuple[GHLSandbox, SandboxServer]) -> AsyncIterator[httpx2.AsyncClient]:
    sandbox, server = served
    sandbox.reset()
    async with httpx2.AsyncClient(base_url=server.url, headers=HEADERS, timeout=5) as client:
        yield client


async def create(api: httpx2.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await api.post("/contacts/", json={"locationId": LOC, **fields})
    assert r.status_code == 201, r.text
    return r.json()["contact"]


@pytest.mark.anyio
async def test_create_is_201_with_contact_envelope_ids_and_timestamps(api: httpx2.AsyncClient) -> None:
    r = await api.post(
        "/contacts/",
        json={
            "locationId": LOC,
            "firstName": "Rosan",
            "lastName": "Deo",
            "email": "Rosan@Deos.com",
            "phone": "+1 888-888-8888",
        },
    )
    assert r.status_code == 201
    contact = r.json()["contact"]
    assert re.fullmatch(r"[A-Za-z0-9]{20}", contact["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", contact["dateAdded"])
    assert contact["phone"] == "+18888888888"
    assert contact["emailLowerCase"] == "rosan@deos.com"
    assert contact["fullNameLowerCase"] == "rosan deo"
    for header in (
        "X-RateLimit-Limit-Daily",
        "X-RateLimit-Daily-Remaining",
        "X-RateLimit-Interval-Milliseconds",
        "X-RateLimit-Max",
        "X-RateLimit-Remaining",
    ):
        assert header in r.headers
    got = await api.get(f"/contacts/{contact['id']}")
    assert got.status_code == 200
    assert got.json()["contact"]["id"] == contact["id"]


@pytest.mark.anyio
async def test_update_says_succeded_and_replaces_tags_delete_then_404(api: httpx2.AsyncClient) -> None:
    contact = await create(api, firstName="A", tags=["One", "two"])
    assert contact["tags"] == ["one", "two"]
    r = await api.put(f"/contacts/{contact['id']}", json={"lastName": "B", "tags": ["three"]})
    assert r.status_code == 200
    assert r.json()["succeded"] is True
    assert r.json()["contact"]["tags"] == ["three"]
    assert r.json()["contact"]["lastName"] == "B"
    r = await api.delete(f"/contacts/{contact['id']}")
    assert (r.status_code, r.json()) == (200, {"succeded": True})
    r = await api.get(f"/contacts/{contact['id']}")
    assert r.status_code == 404
    assert r.json()["statusCode"] == 404


@pytest.mark.anyio
async def test_validation_refuses_unknown_properties_wrong_types_and_missing_required(
    api: httpx2.AsyncClient,
) -> None:
    r = await api.post("/contacts/", json={"locationId": LOC, "favouriteColour": "red", "dnd": "yes"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "Unprocessable Entity"
    assert any("favouriteColour" in m for m in body["message"])
    assert any(m.startswith("dnd ") for m in body["message"])
    r = await api.post("/contacts/", json={"firstName": "x"})
    assert r.status_code == 422
    assert any("locationId" in m for m in r.json()["message"])
    # UpdateContactDto has no locationId / companyName: sending them is an error, as on GHL.
    contact = await create(api, firstName="x")
    r = await api.put(f"/contacts/{contact['id']}", json={"companyName": "Acme"})
    assert r.status_code == 422


@pytest.mark.anyio
async def test_custom_fields_written_as_field_value_read_as_value(api: httpx2.AsyncClient) -> None:
    contact = await create(
        api,
        customFields=[
            {"key": "appointment_status", "field_value": "Confirmed"},
            {"id": SCORE_FIELD, "field_value": "42"},
            {"key": "contact.budget", "field_value": 1500.5},
        ],
    )
    values = {f["id"]: f["value"] for f in contact["customFields"]}
    assert values[STATUS_FIELD] == "Confirmed"
    assert values[SCORE_FIELD] == 42
    assert all(set(f) == {"id", "value"} for f in contact["customFields"])
    r = await api.put(
        f"/contacts/{contact['id']}", json={"customFields": [{"id": SCORE_FIELD, "field_value": 7}]}
    )
    values = {f["id"]: f["value"] for f in r.json()["contact"]["customFields"]}
    assert values == {STATUS_FIELD: "Confirmed", SCORE_FIELD: 7, "SbxCf000000000000004": 1500.5}
    for bad in (
        {"id": "NoSuchField000000000", "field_value": "x"},
        {"key": "no_such_key", "field_value": "x"},
        {"key": "appointment_status", "field_value": "Maybe"},
        {"id": SCORE_FIELD, "field_value": "lots"},
    ):
        r = await api.put(f"/contacts/{contact['id']}", json={"customFields": [bad]})
        assert r.status_code == 422, bad


@pytest.mark.anyio
async def test_create_refuses_duplicates_and_upsert_merges(api: httpx2.AsyncClient) -> None:
    first = await create(api, email="lead@example.com", tags=["web"])
    r = await api.post("/contacts/", json={"locationId": LOC, "email": "LEAD@example.com"})
    assert r.status_code == 400
    assert r.json()["meta"]["contactId"] == first["id"]
    r = await api.post(
        "/contacts/upsert",
        json={"locationId": LOC, "email": "Lead@Example.com", "firstName": "Li", "tags": ["sms"]},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["new"] is False and body["traceId"]
    assert body["contact"]["id"] == first["id"]
    assert body["contact"]["tags"] == ["web", "sms"]
    assert body["contact"]["firstName"] == "Li"
    r = await api.post("/contacts/upsert", json={"locationId": LOC, "phone": "(555) 000-1111"})
    assert r.json()["new"] is True
    again = await api.post("/contacts/upsert", json={"locationId": LOC, "phone": "+15550001111", "city": "X"})
    assert again.json()["new"] is False
    assert again.json()["contact"]["id"] == r.json()["contact"]["id"]


@pytest.mark.anyio
async def test_search_and_duplicate_lookup(api: httpx2.AsyncClient) -> None:
    await create(api, firstName="Alex", email="alex@example.com", tags=["vip"])
    await create(api, firstName="Peter", email="peter@example.com")
    r = await api.post("/contacts/search", json={"locationId": LOC, "pageLimit": 10, "query": "alex"})
    assert r.status_code == 200
    assert r.json()["total"] == 1 and r.json()["contacts"][0]["firstName"] == "Alex"
    filters = [
        {
            "group": "OR",
            "filters": [
                {"field": "firstNameLowerCase", "operator": "eq", "value": "peter"},
                {"field": "tags", "operator": "contains", "value": "vip"},
            ],
        }
    ]
    r = await api.post("/contacts/search", json={"locationId": LOC, "pageLimit": 10, "filters": filters})
    assert r.json()["total"] == 2
    r = await api.post("/contacts/search", json={"locationId": LOC, "pageLimit": 1, "page": 2})
    assert len(r.json()["contacts"]) == 1 and r.json()["total"] == 2
    r = await api.get("/contacts/search/duplicate", params={"locationId": LOC, "email": "ALEX@example.com"})
    assert r.status_code == 200 and r.json()["contact"]["firstName"] == "Alex"
    r = await api.get("/contacts/search/duplicate", params={"locationId": LOC, "email": "nobody@example.com"})
    assert r.json() == {"contact": None}


@pytest.mark.anyio
async def test_tags_add_201_and_delete_with_json_body(api: httpx2.AsyncClient) -> None:
    contact = await create(api, tags=["a"])
    r = await api.post(f"/contacts/{contact['id']}/tags", json={"tags": ["b", "c"]})
    assert (r.status_code, r.json()) == (201, {"tags": ["a", "b", "c"]})
    r = await api.request("DELETE", f"/contacts/{contact['id']}/tags", json={"tags": ["a", "c"]})
    assert (r.status_code, r.json()) == (200, {"tags": ["b"]})
    r = await api.request("DELETE", f"/contacts/{contact['id']}/tags")
    assert r.status_code == 422


@pytest.mark.anyio
async def test_notes_crud(api: httpx2.AsyncClient) -> None:
    cid = (await create(api))["id"]
    r = await api.post(f"/contacts/{cid}/notes", json={"body": "called, no answer", "title": "Call"})
    assert r.status_code == 201
    note = r.json()["note"]
    assert note["contactId"] == cid and note["body"] == "called, no answer"
    r = await api.put(f"/contacts/{cid}/notes/{note['id']}", json={"body": "called back"})
    assert r.status_code == 200 and r.json()["note"]["body"] == "called back"
    assert (await api.get(f"/contacts/{cid}/notes")).json()["notes"][0]["id"] == note["id"]
    assert (await api.get(f"/contacts/{cid}/notes/{note['id']}")).status_code == 200
    r = await api.delete(f"/contacts/{cid}/notes/{note['id']}")
    assert r.json() == {"succeded": True}
    assert (await api.get(f"/contacts/{cid}/notes/{note['id']}")).status_code == 404
    assert (await api.post(f"/contacts/{cid}/notes", json={"title": "no body"})).status_code == 422


@pytest.mark.anyio
async def test_tasks_crud(api: httpx2.AsyncClient) -> None:
    cid = (await create(api))["id"]
    r = await api.post(f"/contacts/{cid}/tasks", json={"title": "Call back"})
    assert r.status_code == 422
    assert {m.split()[0] for m in r.json()["message"]} >= {"dueDate", "completed"}
    r = await api.post(
        f"/contacts/{cid}/tasks",
        json={"title": "Call back", "dueDate": "2020-10-25T11:00:00Z", "completed": False},
    )
    assert r.status_code == 201
    task = r.json()["task"]
    assert task["dueDate"] == "2020-10-25T11:00:00.000Z"
    r = await api.put(f"/contacts/{cid}/tasks/{task['id']}/completed", json={"completed": True})
    assert r.status_code == 200 and r.json()["task"]["completed"] is True
    r = await api.put(f"/contacts/{cid}/tasks/{task['id']}", json={"title": "Call again"})
    assert r.json()["task"]["title"] == "Call again"
    assert len((await api.get(f"/contacts/{cid}/tasks")).json()["tasks"]) == 1
    assert (await api.delete(f"/contacts/{cid}/tasks/{task['id']}")).json() == {"succeded": True}
    assert (await api.get(f"/contacts/{cid}/tasks/{task['id']}")).status_code == 404


@pytest.mark.anyio
async def test_auth_version_and_location_checks(api: httpx2.AsyncClient) -> None:
    r = await api.get("/contacts/x", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json() == {
        "statusCode": 401,
        "message": "Invalid token: access token is invalid",
        "error": "Unauthorized",
    }
    assert "X-RateLimit-Remaining" in r.headers
    r = await api.get("/contacts/x", headers={"Version": ""})
    assert r.status_code == 400 and r.json()["statusCode"] == 400
    r = await api.get("/contacts/x", headers={"Version": "2021-04-15"})
    assert r.status_code == 400
    r = await api.post("/contacts/", json={"locationId": "OtherLocation0000001"})
    assert r.status_code == 403
    r = await api.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"] == "Not Found"
    r = await api.post("/contacts/", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400

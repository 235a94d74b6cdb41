"""The HubSpot simulator over real HTTP: auth, objects, batch, search, limits, associations, faults,
webhooks. Time is a fake clock the test moves; nothing here sleeps on wall time except the latency
check, which needs a real 0.2 s.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx2
import pytest

from crm_mcp.providers.hubspot.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PORTAL_ID,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    HubSpotSandbox,
    HubSpotSandboxConfig,
    start_hubspot_sandbox,
)
from crm_mcp.sandbox.runner import SandboxServer

try:
    from crm_mcp.providers.hubspot.webhooks import SignatureRejected, verify_hubspot_v3
except ImportError:  # the verifier's home before the providers/ move
    from crm_mcp.sync.signatures import SignatureRejected, verify_hubspot_v3  # type: ignore[no-redef]

HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
CONTACTS = "/crm/v3/objects/contacts"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
NOTE_TO_CONTACT, TASK_TO_CONTACT, MEETING_TO_CONTACT = 202, 204, 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_709_294_400.0  # 2024-03-01T12:00:00Z

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def served(clock: FakeClock) -> Iterator[tuple[HubSpotSandbox, SandboxServer]]:
    sandbox, server = start_hubspot_sandbox(HubSpotSandboxConfig(clock=clock))
    yield sandbox, server
    server.stop()


@pytest.fixture
def sandbox(served: tuple[HubSpotSandbox, SandboxServer], clock: FakeClock) -> HubSpotSandbox:
    sb = served[0]
    sb.reset()
    sb.set_limits(burst_max=100, burst_interval_ms=10_000, daily_limit=250_000, search_per_second=4)
    sb.set_limits(retry_after_on_429=True)
    sb.config.latency_s = 0.0
    clock.now += 3_600  # every test starts in fresh rate-limit windows
    return sb


@pytest.fixture
async def api(
    served: tuple[HubSpotSandbox, SandboxServer], sandbox: HubSpotSandbox
) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=served[1].url, headers=HEADERS, timeout=5) as client:
        yield client


async def create_contact(api: httpx2.AsyncClient, **props: str) -> dict[str, Any]:
    r = await api.post(CONTACTS, json={"properties": props})
    assert r.status_code == 201, r.text
    return r.json()


def assoc(to_id: str, type_id: int) -> list[dict[str, Any]]:
    return [
        {
            "to": {"id": to_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
    ]


async def search(api: httpx2.AsyncClient, clock: FakeClock, body: dict[str, Any]) -> httpx2.Response:
    clock.now += 1  # stay under the search API's 4 requests per second
    return await api.post(CONTACTS + "/search", json=body)


# ---------------------------------------------------------------------------------------- auth
@pytest.mark.anyio
async def test_missing_or_unknown_token_is_401_with_hubspot_error(api: httpx2.AsyncClient) -> None:
    r = await api.get(CONTACTS, headers={"Authorization": ""})
    assert r.status_code == 401
    body = r.json()
    assert body["category"] == "INVALID_AUTHENTICATION" and body["status"] == "error"
    assert (
        UUID.fullmatch(body["correlationId"])
        and r.headers["X-HubSpot-Correlation-Id"] == body["correlationId"]
    )
    r = await api.get(CONTACTS, headers={"Authorization": "Bearer pat-na1-not-a-real-token"})
    assert r.status_code == 401 and r.json()["category"] == "INVALID_AUTHENTICATION"


@pytest.mark.anyio
async def test_oauth_refresh_grant_then_token_expiry(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox, clock: FakeClock
) -> None:
    form = {
        "grant_type": "refresh_token",
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "refresh_token": SANDBOX_REFRESH_TOKEN,
    }
    r = await api.post("/oauth/v1/token", data=form)
    assert r.status_code == 200, r.text
    token = r.json()
    assert token["expires_in"] == 1800 and token["hub_id"] == SANDBOX_PORTAL_ID
    assert token["token_type"] == "bearer" and token["refresh_token"] == SANDBOX_REFRESH_TOKEN
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    r = await api.get("/account-info/v3/details", headers=bearer)
    assert r.status_code == 200 and r.json()["portalId"] == SANDBOX_PORTAL_ID
    assert "X-HubSpot-RateLimit-Max" in r.headers and "X-HubSpot-RateLimit-Daily" not in r.headers
    clock.now += 1799
    assert (await api.get(CONTACTS, headers=bearer)).status_code == 200
    clock.now += 1
    r = await api.get(CONTACTS, headers=bearer)
    assert r.status_code == 401 and r.json()["category"] == "EXPIRED_AUTHENTICATION"
    bad = await api.post("/oauth/v1/token", data={**form, "refresh_token": "nope"})
    assert bad.status_code == 400 and bad.json()["status"] == "BAD_REFRESH_TOKEN"
    as_json = await api.post("/oauth/v1/token", json=form)  # HubSpot reads a form body only
    assert as_json.status_code == 400 and as_json.json()["status"] == "BAD_CLIENT_ID"
    assert sandbox.stats["token_grants"]["refresh_token"] == 1


# ---------------------------------------------------------------------------------------- contacts
@pytest.mark.anyio
async def test_create_is_201_and_a_duplicate_email_is_409_naming_the_existing_id(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    created = await create_contact(api, email="Bryan@Biglytics.net", firstname="Bryan", lastname="Cooper")
    assert created["id"].isdigit() and created["archived"] is False
    props = created["properties"]
    assert props["email"] == "bryan@biglytics.net" and props["hs_object_id"] == created["id"]
    assert props["createdate"] == props["lastmodifieddate"] == "2024-03-01T" + props["createdate"][11:]
    assert all(isinstance(v, str) for v in props.values())
    r = await api.post(CONTACTS, json={"properties": {"email": "bryan@BIGLYTICS.net"}})
    assert r.status_code == 409
    assert r.json()["category"] == "CONFLICT"
    assert r.json()["message"] == f"Contact already exists. Existing ID: {created['id']}"
    assert sandbox.contact_count() == 1


@pytest.mark.anyio
async def test_writes_refuse_unknown_properties_non_strings_and_bad_values(api: httpx2.AsyncClient) -> None:
    cases = [
        ({"email": "a@x.io", "favourite_colour": "blue"}, "PROPERTY_DOESNT_EXIST"),
        ({"email": "a@x.io", "crm_mcp_lead_score": 42}, "INVALID_PROPERTY_VALUE_TYPE"),
        ({"email": "a@x.io", "firstname": None}, "INVALID_PROPERTY_VALUE_TYPE"),
        ({"email": "a@x.io", "crm_mcp_appointment_status": "maybe"}, "INVALID_OPTION"),
        ({"email": "a@x.io", "crm_mcp_next_appointment_date": "1709294400001"}, "INVALID_DATE"),
        ({"email": "not-an-email"}, "INVALID_EMAIL"),
        ({"email": "a@x.io", "hs_object_id": "7"}, "READ_ONLY_VALUE"),
    ]
    for props, code in cases:
        r = await api.post(CONTACTS, json={"properties": props})
        assert r.status_code == 400, props
        body = r.json()
        assert body["category"] == "VALIDATION_ERROR"
        assert body["message"].startswith("Property values were not valid: ")
        assert [e["code"] for e in body["errors"]] == [code]
    ok = await create_contact(
        api, email="a@x.io", crm_mcp_next_appointment_date="2024-03-05", crm_mcp_lead_score="42"
    )
    assert ok["properties"]["crm_mcp_next_appointment_date"] == "2024-03-05"


@pytest.mark.anyio
async def test_read_by_id_or_email_select_properties_update_and_archive(
    api: httpx2.AsyncClient, clock: FakeClock
) -> None:
    c = await create_contact(api, email="jo@x.io", firstname="Jo")
    r = await api.get(
        f"{CONTACTS}/jo@x.io", params={"idProperty": "email", "properties": "firstname,phone,nope"}
    )
    assert r.status_code == 200
    assert r.json()["properties"] == {
        "createdate": c["properties"]["createdate"],
        "firstname": "Jo",
        "hs_object_id": c["id"],
        "lastmodifieddate": c["properties"]["lastmodifieddate"],
        "phone": None,
    }
    clock.now += 60
    r = await api.patch(
        f"{CONTACTS}/{c['id']}", json={"properties": {"phone": "+1 555 0100", "firstname": ""}}
    )
    assert r.status_code == 200
    updated = r.json()["properties"]
    assert updated["phone"] == "+1 555 0100" and "firstname" not in updated
    assert updated["lastmodifieddate"] > c["properties"]["lastmodifieddate"]
    assert (await api.delete(f"{CONTACTS}/{c['id']}")).status_code == 204
    r = await api.get(f"{CONTACTS}/{c['id']}")
    assert r.status_code == 404 and r.json()["category"] == "OBJECT_NOT_FOUND"
    assert (await api.get(f"{CONTACTS}/{c['id']}", params={"archived": "true"})).json()["archived"] is True
    await create_contact(api, email="jo@x.io")  # archiving freed the email


@pytest.mark.anyio
async def test_list_pages_with_after_and_refuses_limit_over_100(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    ids = sandbox.seed_contacts({"email": f"p{i}@x.io"} for i in range(25))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 10}
    while True:
        page = (await api.get(CONTACTS, params=params)).json()
        seen += [row["id"] for row in page["results"]]
        if "paging" not in page:
            break
        params["after"] = page["paging"]["next"]["after"]
    assert seen == ids
    r = await api.get(CONTACTS, params={"limit": 101})
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"


# ---------------------------------------------------------------------------------------- batch
@pytest.mark.anyio
async def test_batch_upsert_by_email_partial_failure_is_207(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    existing = await create_contact(api, email="old@x.io", firstname="Old")
    inputs = [
        {"idProperty": "email", "id": "new@x.io", "properties": {"firstname": "New"}},
        {"idProperty": "email", "id": "OLD@x.io", "properties": {"firstname": "Older"}},
        {"idProperty": "email", "id": "broken@x.io", "properties": {"lifecyclestage": "friend"}},
    ]
    r = await api.post(CONTACTS + "/batch/upsert", json={"inputs": inputs})
    assert r.status_code == 207
    body = r.json()
    assert body["status"] == "COMPLETE" and body["numErrors"] == 1
    by_email = {row["properties"]["email"]: row for row in body["results"]}
    assert by_email["new@x.io"]["new"] is True
    assert by_email["old@x.io"]["new"] is False and by_email["old@x.io"]["id"] == existing["id"]
    assert by_email["old@x.io"]["properties"]["firstname"] == "Older"
    (error,) = body["errors"]
    assert error["category"] == "VALIDATION_ERROR" and error["context"] == {"ids": ["broken@x.io"]}
    assert set(error) >= {"status", "category", "message", "context", "errors", "links"}
    assert sandbox.contact_count() == 2
    ok = await api.post(CONTACTS + "/batch/upsert", json={"inputs": inputs[:2]})
    assert ok.status_code == 200 and "errors" not in ok.json()


@pytest.mark.anyio
async def test_batch_size_status_codes_and_missing_ids(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    too_many = [{"properties": {"email": f"b{i}@x.io"}} for i in range(101)]
    r = await api.post(CONTACTS + "/batch/create", json={"inputs": too_many})
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    assert sandbox.contact_count() == 0
    r = await api.post(CONTACTS + "/batch/create", json={"inputs": too_many[:100]})
    assert r.status_code == 201 and len(r.json()["results"]) == 100
    first = r.json()["results"][0]["id"]
    r = await api.post(
        CONTACTS + "/batch/read", json={"inputs": [{"id": first}, {"id": "999999"}], "properties": []}
    )
    assert r.status_code == 207
    assert [row["id"] for row in r.json()["results"]] == [first]
    assert r.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert r.json()["errors"][0]["context"] == {"ids": ["999999"]}
    dup = [{"id": first, "properties": {}}, {"id": first, "properties": {}}]
    assert (await api.post(CONTACTS + "/batch/update", json={"inputs": dup})).status_code == 400
    conflict = await api.post(CONTACTS + "/batch/create", json={"inputs": too_many[:1]})
    assert conflict.status_code == 207 and conflict.json()["errors"][0]["category"] == "CONFLICT"
    assert conflict.json()["errors"][0]["context"] == {"emails": ["b0@x.io"]}


# ---------------------------------------------------------------------------------------- search
@pytest.mark.anyio
async def test_search_filters_sorts_and_pages_to_the_end(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox, clock: FakeClock
) -> None:
    early = sandbox.seed_contacts({"email": f"e{i}@early.io", "company": "Acme Corp"} for i in range(5))
    cutoff_ms = int(clock.now * 1000) + 1
    clock.now += 10
    late = sandbox.seed_contacts({"email": f"l{i}@late.io", "firstname": f"Late{i}"} for i in range(45))
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(cutoff_ms)}]}
        ],
        "limit": 20,
    }
    seen: list[str] = []
    while True:
        page = (await search(api, clock, body)).json()
        assert page["total"] == 45
        seen += [row["id"] for row in page["results"]]
        if "paging" not in page:
            break
        body["after"] = page["paging"]["next"]["after"]
    assert seen == late
    iso = datetime.fromtimestamp(cutoff_ms / 1000, UTC).isoformat()
    r = await search(
        api,
        clock,
        {"filterGroups": [{"filters": [{"propertyName": "createdate", "operator": "LT", "value": iso}]}]},
    )
    assert r.json()["total"] == 5
    either = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "email", "operator": "IN", "values": ["e1@early.io", "l3@late.io"]}
                ]
            },
            {
                "filters": [
                    {"propertyName": "company", "operator": "CONTAINS_TOKEN", "value": "acm*"},
                    {"propertyName": "email", "operator": "EQ", "value": "E4@early.io"},
                ]
            },
        ],
        "sorts": [{"propertyName": "email", "direction": "DESCENDING"}],
        "properties": ["email"],
    }
    rows = (await search(api, clock, either)).json()["results"]
    assert [row["properties"]["email"] for row in rows] == ["l3@late.io", "e4@early.io", "e1@early.io"]
    r = await search(api, clock, {"query": "late17", "filterGroups": []})
    assert [row["id"] for row in r.json()["results"]] == [late[17]]
    has = {"filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "NOT_HAS_PROPERTY"}]}]}
    assert (await search(api, clock, has)).json()["total"] == len(early)


@pytest.mark.anyio
async def test_search_stops_at_the_10000_result_ceiling(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox, clock: FakeClock
) -> None:
    sandbox.seed_contacts({"email": f"c{i}@x.io"} for i in range(10_050))
    r = await search(api, clock, {"after": "9800", "limit": 200})
    assert r.status_code == 200 and r.json()["total"] == 10_050
    assert r.json()["paging"]["next"]["after"] == "10000"
    for after, limit in (("10000", 200), ("9950", 100)):
        r = await search(api, clock, {"after": after, "limit": limit})
        assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    assert (await search(api, clock, {"limit": 201})).status_code == 400


@pytest.mark.anyio
async def test_search_has_its_own_per_second_limit_without_retry_after(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox, clock: FakeClock
) -> None:
    codes = [(await api.post(CONTACTS + "/search", json={})).status_code for _ in range(4)]
    assert codes == [200] * 4
    r = await api.post(CONTACTS + "/search", json={})
    assert r.status_code == 429 and "Retry-After" not in r.headers
    body = r.json()
    assert body["policyName"] == "SECONDLY" and body["errorType"] == "RATE_LIMIT"
    assert (await api.get(CONTACTS)).status_code == 200  # the burst budget is a separate one
    clock.now += 1
    assert (await api.post(CONTACTS + "/search", json={})).status_code == 200
    assert sandbox.stats["rate_limited_by_policy"] == {"SECONDLY": 1}


# ---------------------------------------------------------------------------------------- limits
@pytest.mark.anyio
async def test_burst_limit_429_with_headers_and_configurable_retry_after(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox, clock: FakeClock
) -> None:
    sandbox.set_limits(burst_max=3, daily_limit=1000)
    seen = [(await api.get(CONTACTS)).headers for _ in range(3)]
    assert [h["X-HubSpot-RateLimit-Remaining"] for h in seen] == ["2", "1", "0"]
    assert seen[0]["X-HubSpot-RateLimit-Max"] == "3"
    assert seen[0]["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert [h["X-HubSpot-RateLimit-Daily-Remaining"] for h in seen] == ["999", "998", "997"]
    r = await api.get(CONTACTS)
    assert r.status_code == 429 and r.headers["Retry-After"] == "10"
    body = r.json()
    assert set(body) == {"status", "message", "errorType", "correlationId", "policyName"}
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["policyName"] == "TEN_SECONDLY_ROLLING" and UUID.fullmatch(body["correlationId"])
    sandbox.set_limits(retry_after_on_429=False)
    assert "Retry-After" not in (await api.get(CONTACTS)).headers
    clock.now += 10
    assert (await api.get(CONTACTS)).status_code == 200
    assert sandbox.stats["rate_limited"] == 2


@pytest.mark.anyio
async def test_daily_limit_answers_policy_daily(api: httpx2.AsyncClient, sandbox: HubSpotSandbox) -> None:
    sandbox.set_limits(daily_limit=2)
    assert [(await api.get(CONTACTS)).status_code for _ in range(2)] == [200, 200]
    r = await api.get(CONTACTS)
    assert r.status_code == 429 and r.json()["policyName"] == "DAILY"


# ---------------------------------------------------------------------------------------- activities
@pytest.mark.anyio
async def test_notes_tasks_meetings_are_listed_back_through_v4_associations(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    contact = (await create_contact(api, email="act@x.io"))["id"]
    when = "2024-03-02T15:00:00Z"
    made = {
        "notes": [
            {"hs_note_body": "first", "hs_timestamp": when},
            {"hs_note_body": "second", "hs_timestamp": "1709391600000"},
        ],
        "tasks": [{"hs_task_subject": "Call back", "hs_task_status": "NOT_STARTED", "hs_timestamp": when}],
        "meetings": [
            {
                "hs_meeting_title": "Viewing",
                "hs_meeting_start_time": when,
                "hs_meeting_end_time": "2024-03-02T15:30:00Z",
                "hs_meeting_outcome": "SCHEDULED",
                "hs_timestamp": when,
            }
        ],
    }
    type_ids = {"notes": NOTE_TO_CONTACT, "tasks": TASK_TO_CONTACT, "meetings": MEETING_TO_CONTACT}
    ids: dict[str, list[str]] = {}
    for kind, items in made.items():
        for props in items:
            r = await api.post(
                f"/crm/v3/objects/{kind}",
                json={"properties": props, "associations": assoc(contact, type_ids[kind])},
            )
            assert r.status_code == 201, r.text
            ids.setdefault(kind, []).append(r.json()["id"])
    back = {"notes": 201, "tasks": 203, "meetings": 199}
    for kind in made:
        r = await api.get(f"/crm/v4/objects/contacts/{contact}/associations/{kind}")
        assert r.status_code == 200
        assert [row["toObjectId"] for row in r.json()["results"]] == ids[kind]
        assert r.json()["results"][0]["associationTypes"] == [
            {"category": "HUBSPOT_DEFINED", "typeId": back[kind], "label": None}
        ]
    page = (
        await api.get(f"/crm/v4/objects/contacts/{contact}/associations/notes", params={"limit": 1})
    ).json()
    assert page["paging"]["next"]["after"] == "1"
    r = await api.post(
        "/crm/v3/objects/notes/batch/read",
        json={"inputs": [{"id": i} for i in ids["notes"]], "properties": ["hs_note_body", "hs_timestamp"]},
    )
    notes = r.json()["results"]
    assert [n["properties"]["hs_note_body"] for n in notes] == ["first", "second"]
    assert notes[1]["properties"]["hs_timestamp"] == "2024-03-02T15:00:00.000Z"
    meeting = ids["meetings"][0]
    r = await api.patch(
        f"/crm/v3/objects/meetings/{meeting}", json={"properties": {"hs_meeting_outcome": "COMPLETED"}}
    )
    assert r.status_code == 200 and r.json()["properties"]["hs_meeting_outcome"] == "COMPLETED"
    r = await api.get(f"/crm/v3/objects/notes/{ids['notes'][0]}", params={"associations": "contacts"})
    assert r.json()["associations"]["contacts"]["results"] == [{"id": contact, "type": "note_to_contact"}]


@pytest.mark.anyio
async def test_activity_writes_are_validated(api: httpx2.AsyncClient) -> None:
    contact = (await create_contact(api, email="v@x.io"))["id"]
    note = {"hs_note_body": "x", "hs_timestamp": "2024-03-02T15:00:00Z"}
    wrong_type = await api.post(
        "/crm/v3/objects/notes", json={"properties": note, "associations": assoc(contact, TASK_TO_CONTACT)}
    )
    assert wrong_type.status_code == 400
    no_target = await api.post(
        "/crm/v3/objects/notes", json={"properties": note, "associations": assoc("424242", NOTE_TO_CONTACT)}
    )
    assert no_target.status_code == 400 and no_target.json()["context"] == {"ids": ["424242"]}
    no_time = await api.post("/crm/v3/objects/notes", json={"properties": {"hs_note_body": "x"}})
    assert no_time.status_code == 400 and no_time.json()["errors"][0]["in"] == "hs_timestamp"
    outcome = {"hs_timestamp": "2024-03-02T15:00:00Z", "hs_meeting_outcome": "MAYBE"}
    assert (await api.post("/crm/v3/objects/meetings", json={"properties": outcome})).status_code == 400


# ---------------------------------------------------------------------------------------- schema
@pytest.mark.anyio
async def test_properties_schema_has_standard_and_product_properties(api: httpx2.AsyncClient) -> None:
    r = await api.get("/crm/v3/properties/contacts")
    assert r.status_code == 200 and set(r.json()) == {"results"}
    props = {p["name"]: p for p in r.json()["results"]}
    assert {"email", "firstname", "lastname", "phone", "company", "createdate", "lastmodifieddate"} <= set(
        props
    )
    assert "lead" in [o["value"] for o in props["lifecyclestage"]["options"]]
    assert props["hs_lead_status"]["type"] == "enumeration" and props["email"]["hubspotDefined"] is True
    status = props["crm_mcp_appointment_status"]
    assert status["hubspotDefined"] is False and status["type"] == "enumeration"
    assert [o["value"] for o in status["options"]] == [
        "scheduled",
        "confirmed",
        "cancelled",
        "completed",
        "no_show",
    ]
    assert props["crm_mcp_next_appointment_date"]["type"] == "date"
    assert props["crm_mcp_lead_score"]["type"] == "number"
    for p in props.values():
        assert {"name", "label", "type", "fieldType", "groupName", "description", "options"} <= set(p)
    meetings = {p["name"]: p for p in (await api.get("/crm/v3/properties/meetings")).json()["results"]}
    outcomes = [o["value"] for o in meetings["hs_meeting_outcome"]["options"]]
    assert outcomes == ["SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED"]
    assert (await api.get("/crm/v3/properties/widgets")).status_code == 400


# ---------------------------------------------------------------------------------------- faults
@pytest.mark.anyio
async def test_faults_answer_in_hubspot_shapes_and_via_the_control_plane(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    sandbox.faults.set("error", status=502, count=1)
    r = await api.get(CONTACTS)
    assert r.status_code == 502 and r.json()["correlationId"] == r.headers["X-HubSpot-Correlation-Id"]
    sandbox.faults.set("rate_limit", count=1, retry_after=2)
    r = await api.get(CONTACTS)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert (
        r.json()["policyName"] == "TEN_SECONDLY_ROLLING" and r.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    )
    assert (
        await api.post("/_sandbox/faults", json={"kind": "reset", "count": 1, "path": "/search$"})
    ).status_code == 200
    with pytest.raises(httpx2.TransportError):
        await api.post(CONTACTS + "/search", json={})
    assert (await api.get(CONTACTS)).status_code == 200
    stats = (await api.get("/_sandbox/stats")).json()
    assert stats["faults_injected"] == 3 and stats["by_route"]["GET /crm/v3/objects/contacts"] == 3


@pytest.mark.anyio
async def test_latency_is_service_time_and_requests_overlap(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    sandbox.config.latency_s = 0.2
    statuses: list[int] = []

    async def call() -> None:
        statuses.append((await api.get(CONTACTS)).status_code)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(call)
    assert statuses == [200] * 5
    assert 0.2 <= time.perf_counter() - began < 1.0


# ---------------------------------------------------------------------------------------- stats
@pytest.mark.anyio
async def test_stats_count_write_calls_records_and_batches(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox
) -> None:
    c = await create_contact(api, email="s@x.io")
    await api.patch(f"{CONTACTS}/{c['id']}", json={"properties": {"firstname": "S"}})
    inputs = [{"idProperty": "email", "id": f"s{i}@x.io", "properties": {}} for i in range(3)]
    await api.post(CONTACTS + "/batch/upsert", json={"inputs": inputs})
    stats = sandbox.stats
    assert stats["write_calls"] == {"contacts": 3}
    assert stats["records_written"] == {"contacts": 5}
    assert stats["batch_calls"] == 1
    assert stats["by_route"]["PATCH /crm/v3/objects/contacts/{contactId}"] == 1


# ---------------------------------------------------------------------------------------- webhooks
@pytest.mark.anyio
async def test_signed_webhook_delivery_verifies_and_api_writes_are_recorded_as_events(
    api: httpx2.AsyncClient, sandbox: HubSpotSandbox, clock: FakeClock
) -> None:
    c = await create_contact(api, email="hook@x.io", firstname="Hook")
    await api.patch(f"{CONTACTS}/{c['id']}", json={"properties": {"firstname": "Hooked"}})
    recorded = sandbox.recorded_events()
    kinds = [(e["subscriptionType"], e.get("propertyName")) for e in recorded]
    assert kinds == [
        ("contact.creation", None),
        ("contact.propertyChange", "email"),
        ("contact.propertyChange", "firstname"),
        ("contact.propertyChange", "firstname"),
    ]
    assert recorded[-1]["propertyValue"] == "Hooked" and recorded[0]["objectId"] == int(c["id"])
    event = sandbox.contact_event(c["id"], "contact.propertyChange", "firstname")
    assert event["propertyValue"] == "Hooked" and event["portalId"] == SANDBOX_PORTAL_ID
    assert set(event) >= {"eventId", "subscriptionId", "occurredAt", "attemptNumber", "changeSource", "appId"}
    url = "https://crm.example.com/webhooks/hubspot?tenant=a%40b"
    body, headers = sandbox.webhook_delivery(url, [event, recorded[0]])
    now = datetime.fromtimestamp(clock.now, UTC)
    verify_hubspot_v3(
        method="POST", uri=url, body=body, headers=headers, client_secret=SANDBOX_CLIENT_SECRET, now=now
    )
    assert headers["X-HubSpot-Signature"] == hashlib.sha256(SANDBOX_CLIENT_SECRET.encode() + body).hexdigest()
    with pytest.raises(SignatureRejected):
        verify_hubspot_v3(
            method="POST",
            uri=url,
            body=body + b" ",
            headers=headers,
            client_secret=SANDBOX_CLIENT_SECRET,
            now=now,
        )

"""The RingCentral simulator on its own, over raw HTTP: the deterministic call history and its
seeding, navigation links, the usage-plan headers and the 429 penalty that restarts."""

from __future__ import annotations

import base64

import httpx2
import pytest

from crm_mcp.providers.ringcentral.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_JWT,
    RingCentralSandbox,
)
from crm_mcp.providers.ringcentral.sandbox.calls import generate
from tests.providers.support import FakeTime

BASIC = base64.b64encode(f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode()).decode()


def token(client: httpx2.Client) -> str:
    reply = client.post(
        "/restapi/oauth/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": SANDBOX_JWT},
        headers={"Authorization": f"Basic {BASIC}"},
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["expires_in"] == 3600 and body["refresh_token"] and body["token_type"] == "bearer"
    return str(body["access_token"])


def test_the_generator_is_deterministic_and_has_every_kind_of_call() -> None:
    first, again = generate(500, 3, 7, 1_790_000_000.0, 3), generate(500, 3, 7, 1_790_000_000.0, 3)
    assert [c.telephony_session_id for c in first] == [c.telephony_session_id for c in again]
    assert len(first) == 500 and len({c.telephony_session_id for c in first}) == 500
    assert {c.kind for c in first} >= {"answered", "missed", "voicemail", "queue_answered", "outbound"}
    assert len({c.external for c in first}) < 200  # repeat callers
    assert sum(1 for c in first if c.recording and c.recording.pending) == 3
    assert all(1_790_000_000 - 3 * 86400 <= c.start < 1_790_000_000 for c in first)


def test_seeding_500_calls_over_3_days_through_the_control_plane(
    url: str, sandbox: RingCentralSandbox
) -> None:
    with httpx2.Client(base_url=url) as client:
        described = client.post("/_sandbox/calls", json={"calls": 500, "days": 3}).json()
        assert described["calls"] == 500 and described["records"] > 500 and described["recordings"] > 50
        assert client.get("/_sandbox/calls").json()["calls"] == 500
        assert client.post("/_sandbox/calls", json={"calls": -1}).status_code == 400


def test_pages_link_to_each_other_and_carry_the_group_headers(url: str, sandbox: RingCentralSandbox) -> None:
    sandbox.set_limits(all=1000)
    with httpx2.Client(base_url=url) as client:
        auth = {"Authorization": f"Bearer {token(client)}"}
        first = client.get(
            "/restapi/v1.0/account/~/call-log", params={"perPage": 10, "view": "Detailed"}, headers=auth
        )
        assert first.status_code == 200
        body = first.json()
        assert len(body["records"]) == 10 and body["paging"] == {
            "page": 1,
            "perPage": 10,
            "pageStart": 0,
            "pageEnd": 9,
        }
        assert "legs" in body["records"][0] and "nextPage" in body["navigation"]
        assert first.headers["X-Rate-Limit-Group"] == "heavy" and first.headers["X-Rate-Limit-Window"] == "60"
        nxt = client.get(body["navigation"]["nextPage"]["uri"], headers=auth).json()
        assert nxt["paging"]["page"] == 2 and nxt["records"][0]["id"] != body["records"][0]["id"]
        light = client.get("/restapi/v1.0/account/~/extension/~", headers=auth)
        assert light.headers["X-Rate-Limit-Group"] == "light"


def test_a_request_during_the_penalty_is_refused_and_restarts_it(
    url: str, sandbox: RingCentralSandbox, fake: FakeTime
) -> None:
    sandbox.set_limits(heavy=1)
    with httpx2.Client(base_url=url) as client:
        auth = {"Authorization": f"Bearer {token(client)}"}
        path = "/restapi/v1.0/account/~/call-log"
        assert client.get(path, headers=auth).status_code == 200
        fake.now += 1
        over = client.get(path, headers=auth)
        assert over.status_code == 429 and over.headers["Retry-After"] == "60"
        assert over.json()["errorCode"] == "CMN-301"
        fake.now += 59  # the window has rolled over, but the penalty restarts with this early retry
        assert client.get(path, headers=auth).status_code == 429
        fake.now += 59
        assert client.get(path, headers=auth).status_code == 429
        fake.now += 61
        assert client.get(path, headers=auth).status_code == 200
    assert sandbox.stats["sent_during_penalty"] == 2


@pytest.mark.parametrize(
    ("headers", "form", "status", "error"),
    [
        ({}, {"grant_type": "refresh_token", "refresh_token": "x"}, 401, "invalid_client"),
        (
            {"Authorization": f"Basic {BASIC}"},
            {"grant_type": "refresh_token", "refresh_token": "x"},
            400,
            "invalid_grant",
        ),
        ({"Authorization": f"Basic {BASIC}"}, {"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_refused_grants_answer_oauth_errors(
    url: str,
    sandbox: RingCentralSandbox,
    headers: dict[str, str],
    form: dict[str, str],
    status: int,
    error: str,
) -> None:
    with httpx2.Client(base_url=url) as client:
        reply = client.post("/restapi/oauth/token", data=form, headers=headers)
    assert reply.status_code == status and reply.json()["error"] == error


def test_an_expired_token_is_a_401(url: str, sandbox: RingCentralSandbox, fake: FakeTime) -> None:
    with httpx2.Client(base_url=url) as client:
        auth = {"Authorization": f"Bearer {token(client)}"}
        fake.now += 3600
        reply = client.get("/restapi/v1.0/account/~/extension/~", headers=auth)
    assert reply.status_code == 401 and reply.json()["errorCode"] == "OAU-213"

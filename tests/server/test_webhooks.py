"""POST /webhooks/{provider}/{connection} over real loopback HTTP, with sandbox-signed bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import select

from crm_mcp.providers.gohighlevel.sandbox.signer import GHLWebhookSigner, ghl_event_body
from crm_mcp.providers.hubspot.sandbox.signer import hubspot_v3_headers
from crm_mcp.runtime import Runtime
from crm_mcp.sandbox.runner import SandboxServer
from crm_mcp.sandbox.webhook_signer import (
    new_standard_secret,
    standard_webhook_headers,
)
from crm_mcp.server.webhooks import build_webhook_app, register
from crm_mcp.settings import load_settings
from crm_mcp.state.db import Database
from crm_mcp.state.models import InboxEvent, Lead

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HUBSPOT_SECRET = "hs-client-secret-canary"


@dataclass
class Env:
    url: str
    db_url: str
    ghl: GHLWebhookSigner
    n8n_secrets: list[str]


@pytest.fixture(scope="module")
def signer() -> GHLWebhookSigner:
    return GHLWebhookSigner(rsa_bits=2048)


LOC = "SbxLoc00000000000001"  # the ghl connection's location
LOC2 = "SbxLoc00000000000002"  # the ghl2 connection's location (another tenant, same signing key)


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@pytest.fixture
def env(tmp_path: Path, signer: GHLWebhookSigner, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for key in [k for k in __import__("os").environ if k.startswith("CRM_MCP_")]:
        monkeypatch.delenv(key)
    secrets = [new_standard_secret(), new_standard_secret()]
    config = tmp_path / "crm-mcp.toml"
    config.write_text(
        "[connections.ghl]\n"
        'provider = "gohighlevel"\n'
        f'location_id = "{LOC}"\n'
        f"webhook_public_key = {toml_str(signer.rsa_public_pem)}\n"
        f"webhook_ed25519_public_key = {toml_str(signer.ed25519_public_pem)}\n"
        "[connections.ghl2]\n"
        'provider = "gohighlevel"\n'
        f'location_id = "{LOC2}"\n'
        f"webhook_public_key = {toml_str(signer.rsa_public_pem)}\n"
        "[connections.hs]\n"
        'provider = "hubspot"\n'
        f"client_secret = {toml_str(HUBSPOT_SECRET)}\n"
        'portal_id = "1"\n'
        "[connections.flows]\n"
        'provider = "n8n"\n'
        f"webhook_secrets = [{', '.join(toml_str(s) for s in secrets)}]\n"
    )
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}"
    settings = load_settings(
        _env_file=None, database_url=db_url, state_dir=tmp_path / "state", config_file=config
    )
    rt = Runtime(settings, clock=lambda: NOW)
    with SandboxServer(build_webhook_app(rt)) as server:
        yield Env(server.url, db_url, signer, secrets)


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as c:
        yield c


async def stored(env: Env) -> list[InboxEvent]:
    db = Database(env.db_url)
    try:
        await db.upgrade()  # a no-op once the server has opened it
        async with db.sessions() as s:
            return list((await s.execute(select(InboxEvent).order_by(InboxEvent.id))).scalars())
    finally:
        await db.dispose()


async def test_ghl_contact_is_stored_deduped_and_processed(env: Env, client: httpx2.AsyncClient) -> None:
    body = ghl_event_body(
        {
            "type": "ContactCreate",
            "locationId": LOC,
            "id": "c-1",
            "email": "ada@example.com",
            "firstName": "Ada",
        },
        timestamp=NOW,
        webhook_id="wh-1",
    )
    url = f"{env.url}/webhooks/gohighlevel/ghl"
    r = await client.post(url, content=body, headers=env.ghl.headers(body))
    assert r.status_code == 200 and r.json() == {"stored": 1, "event_ids": ["wh-1"]}
    # the Ed25519 signature alone is enough too, and the redelivery is a duplicate
    r2 = await client.post(url, content=body, headers=env.ghl.headers(body, rsa_sig=False))
    assert r2.status_code == 200 and r2.json()["duplicate"] is True
    assert len(await stored(env)) == 1
    db = Database(env.db_url)
    try:
        with anyio.fail_after(5):  # processing runs right after the response, in the server
            while True:
                async with db.sessions() as s:
                    lead = (await s.execute(select(Lead))).scalar_one_or_none()
                if lead is not None:
                    break
                await anyio.sleep(0.01)
    finally:
        await db.dispose()
    assert lead.first_name == "Ada" and lead.email == "ada@example.com"


async def test_event_for_another_location_is_refused_and_never_applied(
    env: Env, client: httpx2.AsyncClient
) -> None:
    """Signed with GoHighLevel's (shared) key but about another location: 403, not stored."""
    url = f"{env.url}/webhooks/gohighlevel/ghl"
    ours = ghl_event_body(
        {
            "type": "ContactCreate",
            "locationId": LOC,
            "id": "c-1",
            "email": "ada@example.com",
            "firstName": "Ada",
        },
        timestamp=NOW,
        webhook_id="ours",
    )
    assert (await client.post(url, content=ours, headers=env.ghl.headers(ours))).status_code == 200
    foreign = ghl_event_body(
        {
            "type": "ContactUpdate",
            "locationId": "AnotherCustomersLoc1",
            "id": "c-1",
            "email": "ada@example.com",
            "firstName": "Mallory",
            "dateUpdated": "2099-01-01T00:00:00Z",
        },
        timestamp=NOW,
        webhook_id="foreign",
    )
    r = await client.post(url, content=foreign, headers=env.ghl.headers(foreign))
    assert r.status_code == 403 and "another location" in r.json()["error"]
    assert [e.event_id for e in await stored(env)] == ["ours"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/webhooks/gohighlevel/nope", 404), ("/webhooks/zoho/ghl", 404), ("/webhooks/hubspot/ghl", 404)],
)
async def test_unknown_provider_or_connection(
    env: Env, client: httpx2.AsyncClient, path: str, status: int
) -> None:
    r = await client.post(env.url + path, content=b"{}")
    assert r.status_code == status and "error" in r.json()
    assert await stored(env) == []


async def test_refusals_over_http_store_nothing(env: Env, client: httpx2.AsyncClient) -> None:
    url = f"{env.url}/webhooks/gohighlevel/ghl"
    good = ghl_event_body(
        {"locationId": LOC, "type": "ContactUpdate", "id": "c"}, timestamp=NOW, webhook_id="w"
    )
    tampered = await client.post(url, content=good.replace(b'"c"', b'"d"'), headers=env.ghl.headers(good))
    assert tampered.status_code == 401 and "signature" in tampered.json()["error"]
    stale = ghl_event_body(
        {"locationId": LOC, "type": "ContactUpdate", "id": "c"}, timestamp=NOW - timedelta(minutes=10)
    )
    assert (await client.post(url, content=stale, headers=env.ghl.headers(stale))).status_code == 401
    bad_json = b"{not json"
    r = await client.post(url, content=bad_json, headers=env.ghl.headers(bad_json))
    assert r.status_code == 400 and r.json() == {"error": "webhook body is not valid JSON"}
    big = b'{"pad": "' + b"x" * (300 * 1024) + b'"}'
    assert (await client.post(url, content=big, headers=env.ghl.headers(big))).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(300):
            yield b"x" * 1024

    chunked = await client.post(
        url, content=chunks(), headers={"x-wh-signature": "AAAA", "content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert await stored(env) == []


async def test_the_same_event_id_on_two_connections_is_stored_for_both(
    env: Env, client: httpx2.AsyncClient
) -> None:
    """Event ids are unique per sender account only: one tenant's id never makes another
    tenant's event a dropped "duplicate". Within one connection a redelivery still is one."""
    for name, loc in (("ghl", LOC), ("ghl2", LOC2)):
        body = ghl_event_body(
            {"type": "ContactCreate", "locationId": loc, "id": f"c-{name}", "email": f"{name}@example.com"},
            timestamp=NOW,
            webhook_id="same-id",
        )
        url = f"{env.url}/webhooks/gohighlevel/{name}"
        r = await client.post(url, content=body, headers=env.ghl.headers(body, ed25519_sig=False))
        assert r.status_code == 200 and r.json() == {"stored": 1, "event_ids": ["same-id"]}, r.text
        again = await client.post(url, content=body, headers=env.ghl.headers(body, ed25519_sig=False))
        assert again.json()["duplicate"] is True
    rows = await stored(env)
    assert sorted((e.connection, e.event_id) for e in rows) == [("ghl", "same-id"), ("ghl2", "same-id")]


async def test_ghl_event_without_a_timestamp_is_refused(env: Env, client: httpx2.AsyncClient) -> None:
    """No timestamp, no freshness proof: a captured delivery could be replayed forever."""
    url = f"{env.url}/webhooks/gohighlevel/ghl"
    body = ghl_event_body({"locationId": LOC, "type": "ContactUpdate", "id": "c"}, webhook_id="no-ts")
    r = await client.post(url, content=body, headers=env.ghl.headers(body))
    assert r.status_code == 400 and "timestamp" in r.json()["error"]
    assert await stored(env) == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_body_not_sent_as_json_is_refused(
    env: Env, client: httpx2.AsyncClient, content_type: str | None
) -> None:
    """Validly signed, but not declared as JSON (what a cross-site form can send): 415."""
    url = f"{env.url}/webhooks/gohighlevel/ghl"
    body = ghl_event_body({"locationId": LOC, "type": "ContactUpdate", "id": "c"}, timestamp=NOW)
    headers = {k: v for k, v in env.ghl.headers(body).items() if k.lower() != "content-type"}
    if content_type is not None:
        headers["content-type"] = content_type
    r = await client.post(url, content=body, headers=headers)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert await stored(env) == []
    charset = await client.post(
        url, content=body, headers={**headers, "content-type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200, charset.text


async def test_hubspot_v3_over_http(env: Env, client: httpx2.AsyncClient) -> None:
    url = f"{env.url}/webhooks/hubspot/hs?source=test"
    body = json.dumps(
        [
            {
                "eventId": 7,
                "portalId": 1,
                "subscriptionId": 2,
                "occurredAt": 3,
                "subscriptionType": "contact.creation",
            }
        ]
    ).encode()
    headers = hubspot_v3_headers(HUBSPOT_SECRET, "POST", url, body, timestamp=NOW)
    r = await client.post(url, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["stored"] == 1
    wrong = hubspot_v3_headers("not-the-secret", "POST", url, body, timestamp=NOW)
    r = await client.post(url, content=body, headers=wrong)
    assert r.status_code == 401
    assert HUBSPOT_SECRET not in r.text


async def test_standard_webhooks_over_http_with_rotation(env: Env, client: httpx2.AsyncClient) -> None:
    url = f"{env.url}/webhooks/n8n/flows"
    body = b'{"type": "lead.created", "data": {"email": "x@example.com"}}'
    for i, secret in enumerate(env.n8n_secrets):
        h = standard_webhook_headers(secret, body, msg_id=f"msg_{i}", timestamp=NOW)
        assert (await client.post(url, content=body, headers=h)).status_code == 200
    future = standard_webhook_headers(
        env.n8n_secrets[0], body, msg_id="msg_f", timestamp=NOW + timedelta(minutes=6)
    )
    r = await client.post(url, content=body, headers=future)
    assert r.status_code == 401 and "future" in r.json()["error"]
    assert [e.event_id for e in await stored(env)] == ["msg_0", "msg_1"]


def test_register_adds_the_route_to_the_mcp_server(tmp_path: Path) -> None:
    from mcp.server.mcpserver import MCPServer

    rt = Runtime(
        load_settings(
            _env_file=None, state_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
        )
    )
    server: MCPServer[Any] = MCPServer(name="t")
    register(server, rt)
    paths = [getattr(r, "path", None) for r in server.streamable_http_app().routes]
    assert "/webhooks/{provider}/{connection}" in paths

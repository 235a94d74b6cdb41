"""Tenants, scopes and limits over real HTTP: `crm-mcp serve --transport http --sandbox` in a
subprocess, static tokens mapped to principals in crm-mcp.toml, an MCP client (and plain httpx2)
calling it as each tenant.

- alice may use `gohighlevel`, bob `hubspot`; auditor `gohighlevel` with a crm:read token;
  carol has a token but no [principals.carol] table: she gets nothing (fail closed).
- Each sees only its own dead letters, status and operations; another tenant's operation id
  is "not found" exactly like an id that never existed; another tenant's connection is "no
  connection named X" naming none of the others; a reused idempotency key names nothing.
- A crm:read token calling a write gets a tool error; a burst of tool calls beyond the
  principal's rate gets 429 with Retry-After (other principals unaffected); sessions beyond
  the cap get 503 with Retry-After; webhook floods get 429; an oversized body gets 413.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceTemplateReference

from crm_mcp.errors import UpstreamUnavailableError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from tests.server.test_transports import clean_env, free_port, serving

pytestmark = pytest.mark.anyio

TOKENS = {
    "alice": "alice-token-0123456789-abcdefghijklmnop",
    "bob": "bob-token-0123456789-abcdefghijklmnopqrs",
    "auditor": "auditor-token-0123456789-abcdefghijklm",
    "carol": "carol-token-0123456789-abcdefghijklmnop",
    "ops": "ops-token-0123456789-abcdefghijklmnopqrs",
}
PRINCIPALS = """
[principals.alice]
connections = ["gohighlevel"]

[principals.bob]
connections = ["hubspot"]

[principals.auditor]
connections = ["gohighlevel"]

[principals.ops]
connections = ["*"]
"""
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def _seed_dead(db_path: Path) -> dict[str, str]:
    """One dead operation per tenant's connection; returns connection -> operation id."""
    db = Database(f"sqlite+aiosqlite:///{db_path}")
    await db.upgrade()
    ids: dict[str, str] = {}
    for conn in ("gohighlevel", "hubspot"):
        async with db.begin_write() as s:
            op, _ = await outbox.enqueue(
                s,
                idempotency_key=f"{conn}-key",
                connection=conn,
                action="contact.upsert",
                payload={"secret_of": conn},
                entity_type="contact",
                entity_id=f"local-{conn}",
                now=T0,
            )
            ids[conn] = op.id
        (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=timedelta(seconds=60), now=T0)
        err = UpstreamUnavailableError(f"{conn} answered 503", provider=conn, status=503)
        await outbox.mark_failed(db, claimed, err, T0, retryable=False, retry_at=None)
    await db.dispose()
    return ids


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = clean_env(tmp_path)
    toml = tmp_path / "crm-mcp.toml"
    toml.write_text(PRINCIPALS, encoding="utf-8")
    tokens = [{"name": n, "token": t} for n, t in TOKENS.items() if n != "auditor"]
    tokens.append({"name": "auditor", "token": TOKENS["auditor"], "scopes": ["crm:read"]})
    env.update(
        {
            "CRM_MCP_CONFIG": str(toml),
            "CRM_MCP_HTTP_TOKENS": json.dumps(tokens),
            "CRM_MCP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}",
            **extra,
        }
    )
    return env


@contextmanager
def _server(tmp_path: Path, **extra: str) -> Iterator[str]:
    port = free_port()
    with serving(["--transport", "http", "--sandbox", "--no-worker"], _env(tmp_path, **extra), port):
        yield f"http://127.0.0.1:{port}"


@asynccontextmanager
async def _as(url: str, who: str) -> AsyncIterator[Client]:
    headers = {"authorization": f"Bearer {TOKENS[who]}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), cache=None, mode="legacy") as client,
    ):
        yield client


def _text(result: Any) -> str:
    return " ".join(getattr(part, "text", "") for part in result.content)


async def _read(client: Client, uri: str) -> Any:
    result = await client.read_resource(uri)
    return json.loads(result.contents[0].text)  # type: ignore[union-attr]


async def test_tenants_see_only_their_own_data(tmp_path: Path) -> None:
    ids = await _seed_dead(tmp_path / "crm.db")
    with _server(tmp_path) as url:
        async with _as(url, "alice") as alice, _as(url, "bob") as bob, _as(url, "carol") as carol:
            # dead letters and status: each tenant sees its own connection's, and only those
            mine = (await alice.call_tool("list_dead_letters", {})).structured_content
            assert [e["operation_id"] for e in mine["entries"]] == [ids["gohighlevel"]]
            theirs = (await bob.call_tool("list_dead_letters", {})).structured_content
            assert [e["operation_id"] for e in theirs["entries"]] == [ids["hubspot"]]
            asked = await bob.call_tool("list_dead_letters", {"connection": "gohighlevel"})
            assert asked.structured_content["entries"] == []
            resource = await _read(alice, "sync://dead-letter")
            assert [e["connection"] for e in resource["entries"]] == ["gohighlevel"]
            status = (await bob.call_tool("get_sync_status", {"max_age_seconds": 0})).structured_content
            assert status["dead_letters"] == 1 and status["totals"]["dead"] == 1
            assert set(status["connections"]) == {"hubspot"}
            nothing = (await carol.call_tool("list_dead_letters", {})).structured_content
            assert nothing["entries"] == []  # no [principals.carol]: no connections at all
            hers = (await carol.call_tool("get_sync_status", {"max_age_seconds": 0})).structured_content
            assert hers["connections"] == {} and "No connection is mapped" in " ".join(hers["reasons"])

            # the dashboard's API, with bob's token, shows bob's data only
            async with httpx2.AsyncClient(timeout=30) as http:
                bob_auth = {"authorization": f"Bearer {TOKENS['bob']}"}
                board = (await http.get(f"{url}/dashboard/api/state", headers=bob_auth)).json()
                assert [e["connection"] for e in board["dead_letters"]["entries"]] == ["hubspot"]
                foreign_op = await http.get(
                    f"{url}/dashboard/api/operations/{ids['gohighlevel']}", headers=bob_auth
                )
                assert foreign_op.status_code == 404
                # server-wide ops endpoints are the operator's, not a tenant's
                assert (await http.get(f"{url}/metrics", headers=bob_auth)).status_code == 403
                ops_auth = {"authorization": f"Bearer {TOKENS['ops']}"}
                assert (await http.get(f"{url}/metrics", headers=ops_auth)).status_code == 200

            # another tenant's operation is "not found", exactly like one that never existed
            own = await _read(alice, f"sync://operations/{ids['gohighlevel']}")
            assert own["connection"] == "gohighlevel"
            with pytest.raises(MCPError) as foreign:
                await bob.read_resource(f"sync://operations/{ids['gohighlevel']}")
            with pytest.raises(MCPError) as missing:
                await bob.read_resource("sync://operations/00000000-0000-4000-8000-000000000000")
            assert str(foreign.value).replace(ids["gohighlevel"], "ID") == str(missing.value).replace(
                "00000000-0000-4000-8000-000000000000", "ID"
            )
            retry = await bob.call_tool("retry_failed_sync", {"operation_id": ids["gohighlevel"]})
            assert retry.structured_content["count"] == 0
            retry_all = await bob.call_tool("retry_failed_sync", {"all": True})
            assert [op["id"] for op in retry_all.structured_content["requeued"]] == [ids["hubspot"]]
            still = (await alice.call_tool("list_dead_letters", {})).structured_content
            assert [e["operation_id"] for e in still["entries"]] == [ids["gohighlevel"]]

            # another tenant's connection is unknown, and the error names none of the others
            refused = await bob.call_tool("search_contacts", {"query": "jane", "connection": "gohighlevel"})
            assert refused.is_error and "No connection named 'gohighlevel'" in _text(refused)
            assert not any(n in _text(refused) for n in ("zoho", "ringcentral", "resman"))
            completion = await bob.complete(
                ResourceTemplateReference(type="ref/resource", uri="sync://operations/{id}"),
                {"name": "id", "value": ""},
            )
            assert ids["gohighlevel"] not in completion.completion.values

            # idempotency keys are per tenant: the same key (an order number) never collides
            eve = {"first_name": "Eve", "email": "eve@example.com", "idempotency_key": "order-1001"}
            first = (await alice.call_tool("upsert_contact", eve)).structured_content
            other = await bob.call_tool("upsert_contact", eve)
            assert not other.is_error, _text(other)
            assert other.structured_content["sync_operation_id"] != first["sync_operation_id"]
            assert other.structured_content["replayed"] is False
            again = (await alice.call_tool("upsert_contact", eve)).structured_content
            assert again["replayed"] and again["sync_operation_id"] == first["sync_operation_id"]


async def test_read_scope_cannot_write(tmp_path: Path) -> None:
    with _server(tmp_path) as url:
        async with _as(url, "auditor") as auditor:
            ok = await auditor.call_tool("get_sync_status", {})
            assert not ok.is_error
            refused = await auditor.call_tool(
                "upsert_contact", {"first_name": "Eve", "email": "eve@example.com"}
            )
            assert refused.is_error and "lacks the crm:write scope" in _text(refused)
            refused = await auditor.call_tool("retry_failed_sync", {"all": True})
            assert refused.is_error and "crm:write" in _text(refused)


async def test_rate_limits_sessions_and_body_size(tmp_path: Path) -> None:
    limits = {
        "CRM_MCP_RATE_LIMIT_PER_MINUTE": "1",
        "CRM_MCP_RATE_LIMIT_BURST": "3",
        "CRM_MCP_WEBHOOK_RATE_LIMIT_PER_MINUTE": "1",
        "CRM_MCP_WEBHOOK_RATE_LIMIT_BURST": "2",
        "CRM_MCP_MAX_SESSIONS": "3",
    }
    with _server(tmp_path, **limits) as url:
        async with _as(url, "alice") as alice, _as(url, "bob") as bob:
            for _ in range(3):
                assert not (await alice.call_tool("get_sync_status", {})).is_error
            with pytest.raises(MCPError, match="Rate limit exceeded"):
                await alice.call_tool("get_sync_status", {})
            assert not (await bob.call_tool("get_sync_status", {})).is_error  # per principal

            auth = {"authorization": f"Bearer {TOKENS['alice']}"}
            async with httpx2.AsyncClient(timeout=30) as http:
                call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "x"}}
                limited = await http.post(f"{url}/mcp", json=call, headers={**MCP_HEADERS, **auth})
                assert limited.status_code == 429
                assert int(limited.headers["retry-after"]) >= 1
                assert limited.json()["id"] == 7 and limited.json()["error"]["data"]["retry_after"] >= 1

                # two sessions are open (alice, bob): one more fits, the next is refused
                init = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "0"},
                    },
                }
                opened = await http.post(f"{url}/mcp", json=init, headers={**MCP_HEADERS, **auth})
                assert opened.status_code == 200, opened.text
                full = await http.post(f"{url}/mcp", json=init, headers={**MCP_HEADERS, **auth})
                assert full.status_code == 503 and full.headers["retry-after"]

                big = b'{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":"' + b"a" * (5 << 20) + b'"}}'
                too_big = await http.post(f"{url}/mcp", content=big, headers={**MCP_HEADERS, **auth})
                assert too_big.status_code == 413

                hook = f"{url}/webhooks/gohighlevel/gohighlevel"
                answers = [
                    await http.post(hook, json={"type": "ContactCreate"}, headers={"x-wh-signature": "x"})
                    for _ in range(3)
                ]
                assert [a.status_code == 429 for a in answers] == [False, False, True]
                assert int(answers[2].headers["retry-after"]) >= 1

"""The dashboard's HTTP surface on a real `crm-mcp serve --transport http` (no browser needed).

- who may call it: the token when one is configured, the Host/Origin check of /mcp, and a retry
  POST that a cross-site page cannot forge;
- what it says: the same figures as `sync://status` and `sync://dead-letter`;
- what its Retry does: the same thing, in the same words, as the `retry_failed_sync` tool.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.server.test_dashboard_browser import TOKEN, book, served, wait_for_preflight

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

__all__ = ["served"]  # the fixture, shared with the browser test
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RETRY_HEADERS = {**AUTH, "Content-Type": "application/json", "X-CRM-MCP-Dashboard": "1"}


async def read_json_resource(client: Client, uri: str) -> dict[str, Any]:
    result = await client.read_resource(uri)
    return dict(json.loads(result.contents[0].text))  # type: ignore[union-attr]


async def get_json(http: httpx2.AsyncClient, url: str) -> dict[str, Any]:
    return dict((await http.get(url)).json())


def dead_listed(state: dict[str, Any]) -> bool:
    """The dead letter is listed and the status snapshot (cached up to 2 s) has caught up with it."""
    return bool(state["dead_letters"]["count"]) and state["status"]["totals"].get("dead", 0) > 0


def delivered(op: dict[str, Any]) -> bool:
    return op["status"] == "succeeded"


async def until(
    fetch: Callable[[], Awaitable[dict[str, Any]]], done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Fetch until `done` says so (the worker delivers in the background), at most 30 s."""
    with anyio.fail_after(30):
        while True:
            value = await fetch()
            if done(value):
                return value
            await anyio.sleep(0.2)


async def test_who_may_call_the_dashboard(served: tuple[str, Any]) -> None:
    url, _sim = served
    async with httpx2.AsyncClient(timeout=10) as http:
        page = await http.get(f"{url}/dashboard")  # the shell holds no data: no token needed
        assert page.status_code == 200 and "<title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = await http.get(f"{url}/dashboard/assets/app.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert (await http.get(f"{url}/dashboard/assets/index.py")).status_code == 404

        for path in ("/dashboard/api/state", "/dashboard/api/operations/x"):
            bare = await http.get(url + path)
            assert bare.status_code == 401 and "Bearer" in bare.headers["www-authenticate"], path
            wrong = await http.get(url + path, headers={"Authorization": "Bearer wrong-token"})
            assert wrong.status_code == 401, path
        assert (await http.get(f"{url}/dashboard/api/state", headers=AUTH)).status_code == 200

        # DNS rebinding: the Host and Origin rules of /mcp
        evil_host = await http.get(f"{url}/dashboard/api/state", headers={**AUTH, "Host": "evil.example"})
        assert evil_host.status_code == 421
        evil_origin = {**AUTH, "Origin": "http://evil.example"}
        assert (await http.get(f"{url}/dashboard/api/state", headers=evil_origin)).status_code == 403
        assert (await http.get(f"{url}/dashboard", headers={"Host": "evil.example"})).status_code == 421

        retry = f"{url}/dashboard/api/retry"
        body = {"operation_id": "no-such-op"}
        assert (await http.post(retry, json=body)).status_code == 401
        forged = await http.post(
            retry, content=json.dumps(body), headers={**AUTH, "Content-Type": "text/plain"}
        )
        assert forged.status_code == 400  # what a cross-site form could send
        no_marker = await http.post(retry, json=body, headers=AUTH)
        assert no_marker.status_code == 403  # a custom header: never sent cross-site without a preflight
        cross = await http.post(retry, json=body, headers={**RETRY_HEADERS, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        ok = await http.post(retry, json=body, headers=RETRY_HEADERS)
        assert ok.status_code == 200 and ok.json()["count"] == 0, ok.text
        unclear = await http.post(retry, json={"operation_id": "a", "all": True}, headers=RETRY_HEADERS)
        assert unclear.status_code == 400 and "exactly one" in unclear.json()["error"]
        unknown = await http.post(retry, json={"connection": "nope"}, headers=RETRY_HEADERS)
        assert unknown.status_code == 400 and "No connection named 'nope'" in unknown.json()["error"]


async def test_the_dashboard_agrees_with_the_resources_and_retries_like_the_tool(
    served: tuple[str, Any],
) -> None:
    url, sim = served
    await wait_for_preflight(url)
    sim.faults.set("error", status=400)
    op_id = await book(url)
    async with (
        httpx2.AsyncClient(headers=AUTH, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), cache=None) as client,
    ):
        state = await until(lambda: get_json(http, f"{url}/dashboard/api/state"), dead_listed)
        status = await read_json_resource(client, "sync://status")
        dead = await read_json_resource(client, "sync://dead-letter")
        # one snapshot: the worker is idle (the only operation is dead), so nothing moves between reads
        for key in ("totals", "dead_letters", "success_rate", "verdict", "reasons", "recommendations"):
            assert state["status"][key] == status[key], key
        assert state["dead_letters"] == dead
        assert [e["operation_id"] for e in dead["entries"]] == [op_id]
        # every surface of the dead letter carries the id its log lines and spans carry
        [entry] = dead["entries"]
        assert entry["correlation_id"] and len(entry["correlation_id"]) >= 16
        listed = (await client.call_tool("list_dead_letters", {})).structured_content or {}
        assert [e["correlation_id"] for e in listed["entries"]] == [entry["correlation_id"]]
        # per connection: the backlog, quota and verdict of check_integration_health (crm_mcp.views)
        card = state["status"]["connectors"]["gohighlevel"]
        assert card["backlog"] == {
            "pending": 0,
            "in_flight": 0,
            "dead_letters": 1,
            "oldest_pending_age_s": None,
        }
        assert card["health"]["verdict"] == "degraded"
        assert "1 operation(s) failed for good." in card["health"]["reasons"]

        # the button and the tool are one code path: same selection, same sentence
        check = {"connection": "gohighlevel", "dry_run": True}
        api = (await http.post(f"{url}/dashboard/api/retry", json=check, headers=RETRY_HEADERS)).json()
        tool = (await client.call_tool("retry_failed_sync", check)).structured_content or {}
        assert api["message"] == tool["message"] == "1 dead operation(s) would be retried."
        assert [op["id"] for op in api["requeued"]] == [op["id"] for op in tool["requeued"]] == [op_id]

        sim.faults.clear()
        report = (
            await client.call_tool("check_integration_health", {"connection": "gohighlevel"})
        ).structured_content
        [checked] = (report or {})["connections"]
        assert (checked["pending"], checked["in_flight"], checked["dead_letters"]) == (0, 0, 1)

        def judged_alike(state: dict[str, Any]) -> bool:  # once the snapshot holds the new check
            card = state["status"]["connectors"]["gohighlevel"]
            return bool(
                card["health"]["verdict"] == checked["verdict"]
                and card["health"]["reasons"] == checked["reasons"]
                and card["quota"]["burst_limit"] == checked["burst_limit"]
            )

        await until(lambda: get_json(http, f"{url}/dashboard/api/state"), judged_alike)
        body = {"operation_id": op_id}
        done = (await http.post(f"{url}/dashboard/api/retry", json=body, headers=RETRY_HEADERS)).json()
        assert (
            done["count"] == 1 and done["message"] == "1 operation(s) requeued; the worker delivers them now."
        )
        op = await until(lambda: get_json(http, f"{url}/dashboard/api/operations/{op_id}"), delivered)
        assert op == await read_json_resource(client, f"sync://operations/{op_id}")
        again = (
            await client.call_tool("retry_failed_sync", {"operation_id": op_id})
        ).structured_content or {}
        assert again["count"] == 0 and "not a dead operation" in again["message"]

"""Canary secrets: OAuth client secret and every token the simulator issues carry a recognisable
canary; the fault matrix runs through the whole stack (MCP client -> tools -> outbox worker ->
connector -> simulator) and the canary must never surface in logs, tool output, error messages or
the dead-letter queue."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import select

from crm_mcp.providers.gohighlevel.sandbox.oauth import SANDBOX_CLIENT_ID
from crm_mcp.state.models import DeadLetter, SyncLog, SyncOperation
from tests.harness import harness

pytestmark = pytest.mark.anyio
CANARY = "CANARY-5e1f0c7a9d"
FAULTS: list[dict[str, Any]] = [
    {"kind": "error", "status": 503, "count": 2},
    {"kind": "error", "status": 500, "count": 1},
    {"kind": "rate_limit", "retry_after": 1, "count": 2},
    {"kind": "rate_limit", "count": 1},
    {"kind": "malformed", "count": 1},
    {"kind": "reset", "count": 1},
    {"kind": "slow", "delay_s": 0.05, "count": 1},
    {"kind": "error", "status": 400, "count": 1},
    {"kind": "error", "status": 401, "count": 1},
]


async def test_canary_never_leaks(
    ghl_sandbox: Any, settings_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim, server = ghl_sandbox
    sim.oauth.client_secret = f"{CANARY}-client-secret"
    sim.oauth.token_prefix = CANARY  # every access and refresh token issued contains the canary
    settings = settings_factory(
        server.url,
        ghl_token=None,
        ghl_client_id=SANDBOX_CLIENT_ID,
        ghl_client_secret=sim.oauth.client_secret,
        ghl_refresh_token=sim.oauth.install(),
    )
    seen: list[str] = []
    async with harness(settings) as h:
        for i, fault in enumerate(FAULTS):
            sim.faults.set(**fault)
            result = await h.call(
                "create_appointment",
                {"first_name": "C", "last_name": str(i), "email": f"canary{i}@example.com",
                 "start_time": f"2026-12-0{1 + i % 7}T1{i % 8}:00:00", "timezone": "America/New_York",
                 "allow_past": True},
            )  # fmt: skip
            seen += [getattr(c, "text", str(c)) for c in result.content]
            await h.settle()
            sim.faults.clear()
        sim.oauth.revoke()  # the next refresh fails: AuthError into the dead-letter queue
        h.clock.advance(2 * 86_400)
        r = await h.call("create_appointment", {"first_name": "C", "last_name": "revoked",
                                                "email": "revoked@example.com",
                                                "start_time": "2026-12-09T10:00:00",
                                                "allow_past": True})  # fmt: skip
        seen += [getattr(c, "text", str(c)) for c in r.content]
        await h.settle()
        for tool in ("list_dead_letters", "get_sync_status", "check_integration_health"):
            res = await h.call(tool, {})
            seen += [getattr(c, "text", str(c)) for c in res.content]
            seen.append(str(res.structured_content))
        for uri in ("sync://status", "sync://dead-letter"):
            contents = await h.client.read_resource(uri)
            seen += [getattr(c, "text", str(c)) for c in contents.contents]
        db = await h.runtime.database()
        async with db.sessions() as s:
            dead = list((await s.execute(select(DeadLetter))).scalars())
            seen += [f"{d.reason} {d.error_history}" for d in dead]
            seen += [str(o.last_error) for o in (await s.execute(select(SyncOperation))).scalars()]
            seen += [repr(row.__dict__) for row in (await s.execute(select(SyncLog))).scalars()]
    assert sim.oauth.grants["refresh_token"] >= 1  # the canary tokens really were used
    assert dead and any("reconnect" in d.reason.lower() for d in dead)
    haystack = "\n".join(seen) + caplog.text
    assert CANARY not in haystack
    assert CANARY.lower() not in haystack.lower()

"""OAuth through the product: a booking delivered with a refreshed token, and the rotated refresh
token taken from the encrypted store after a restart (the configured one is dead by then)."""

from __future__ import annotations

from typing import Any

import pytest

from crm_mcp.providers.gohighlevel.sandbox.oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from tests.harness import harness
from tests.tools.test_appointments import BOOKING

pytestmark = pytest.mark.anyio


async def test_rotated_refresh_token_survives_a_restart(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    refresh = sim.oauth.install()
    settings = settings_factory(
        server.url,
        ghl_token=None,
        ghl_client_id=SANDBOX_CLIENT_ID,
        ghl_client_secret=SANDBOX_CLIENT_SECRET,
        ghl_refresh_token=refresh,
        secret_key="test-secret-key-for-credentials",
    )
    async with harness(settings) as h:
        await h.ok("create_appointment", BOOKING)
        await h.settle()
        assert len(sim.snapshot()["appointments"]) == 1
    assert sim.oauth.grants["refresh_token"] == 1  # the configured token was used once and rotated away

    # a restart with the same (now dead) configured token: the stored rotated one is used
    async with harness(settings) as h:
        sim.oauth.expire_access_tokens()
        await h.ok(
            "create_appointment",
            {
                **BOOKING,
                "email": "second@example.com",
                "phone": "+15550009999",
                "start_time": "2026-12-02T10:00:00",
            },
        )
        await h.settle()
        assert len(sim.snapshot()["appointments"]) == 2
        dead = await h.ok("list_dead_letters")
        assert dead["count"] == 0
    assert sim.oauth.grants["refresh_token:refused"] == 0


async def test_revoked_install_dead_letters_with_reconnect_advice(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    settings = settings_factory(
        server.url,
        ghl_token=None,
        ghl_client_id=SANDBOX_CLIENT_ID,
        ghl_client_secret=SANDBOX_CLIENT_SECRET,
        ghl_refresh_token=sim.oauth.install(),
        secret_key="test-secret-key-for-credentials",
    )
    sim.oauth.revoke()
    async with harness(settings) as h:
        await h.ok("create_appointment", BOOKING)
        await h.settle()
        entry = (await h.ok("list_dead_letters"))["entries"][0]
        assert "AuthError" in entry["reason"] or "reconnect" in entry["reason"].lower()

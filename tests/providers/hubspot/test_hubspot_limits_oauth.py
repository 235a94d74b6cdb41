"""HubSpot's search limit and OAuth against the simulator, on one virtual clock.

The search API has its own 4 requests/s budget: the connector paces itself under it, and a 429
from it (policy SECONDLY, no Retry-After) is backed off on the search budget alone — the burst
window of every other call is not paused. OAuth access tokens live 30 minutes and are refreshed
once however many calls find them stale.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from crm_mcp.connectors.base import Contact
from crm_mcp.connectors.oauth import MemoryTokenStore
from crm_mcp.errors import AuthError
from crm_mcp.providers.hubspot.connector import HubSpotConnector
from crm_mcp.providers.hubspot.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    HubSpotSandbox,
)
from crm_mcp.sandbox.runner import SandboxServer
from tests.providers.support import FakeTime, NoJitter


def make(served: tuple[HubSpotSandbox, SandboxServer], fake: FakeTime, **kw: Any) -> HubSpotConnector:
    opts = kw or {"token": SANDBOX_TOKEN}
    return HubSpotConnector(
        "t", base_url=served[1].url, clock=fake.clock, sleep=fake.sleep, rng=NoJitter(), **opts
    )


def oauth(
    served: tuple[HubSpotSandbox, SandboxServer], fake: FakeTime, store: MemoryTokenStore
) -> HubSpotConnector:
    return make(
        served,
        fake,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        refresh_token=SANDBOX_REFRESH_TOKEN,
        token_store=store,
        token_clock=fake.wall,
    )


# -- search limit -------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_searches_pace_themselves_under_four_per_second(
    sandbox: HubSpotSandbox, served: Any, fake: FakeTime
) -> None:
    sandbox.seed_contacts([{"email": f"s{i}@example.com"} for i in range(3)])
    c = make(served, fake)
    try:
        for _ in range(12):
            assert (await c.search_contacts(None, 10, None)).total == 3
        for _ in range(12):
            await c.get_contact("1001")  # other calls are not held to the search budget
    finally:
        await c.aclose()
    assert sandbox.stats["rate_limited"] == 0 and sandbox.stats["search_calls"] == 12
    assert 2.0 <= sum(fake.sleeps) <= 3.5  # 12 searches at 4/s; the reads added no wait


@pytest.mark.anyio
async def test_search_429_without_retry_after_is_backed_off_on_the_search_budget_only(
    sandbox: HubSpotSandbox, served: Any, fake: FakeTime
) -> None:
    sandbox.seed_contacts([{"email": "found@example.com", "firstname": "Found"}])
    neighbour, c = make(served, fake), make(served, fake)  # another client spends the same portal's budget
    try:
        for _ in range(4):
            await neighbour.search_contacts(None, 1, None)
        page = await c.search_contacts("found", 10, None)
        assert [x.email for x in page.contacts] == ["found@example.com"]
        assert sandbox.stats["rate_limited_by_policy"] == {"SECONDLY": 1}
        assert 0.9 <= sum(fake.sleeps) <= 1.5  # one second on the search budget, not the 10 s burst window
        snap = c.snapshot()
        assert snap["limiter"]["blocked_for_s"] == 0
        assert snap["endpoint_limiters"]["search"]["limit"] == 4
        slept = sum(fake.sleeps)
        await c.upsert_contact(Contact(email="found@example.com", last_name="Again"))
        assert sum(fake.sleeps) == slept  # the 429 did not pause non-search calls
    finally:
        await neighbour.aclose()
        await c.aclose()


# -- OAuth ------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_fifty_concurrent_calls_cause_one_token_grant(
    sandbox: HubSpotSandbox, served: Any, fake: FakeTime
) -> None:
    (cid,) = sandbox.seed_contacts([{"email": "oauth@example.com"}])
    store = MemoryTokenStore()
    c = oauth(served, fake, store)
    got: list[str] = []

    async def read() -> None:
        got.append(str((await c.get_contact(cid)).id))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(read)
        assert got == [cid] * 50
        assert sandbox.stats["token_grants"] == {"refresh_token": 1}
        assert store.saves == 1  # the (non-rotating) refresh token came back and was persisted
        (saved,) = store.saved.values()
        assert saved["refresh_token"] == SANDBOX_REFRESH_TOKEN and saved["access_token"]
        fake.now += 1800  # the 30-minute access token is past its life: refreshed before use
        await c.get_contact(cid)
        assert sandbox.stats["token_grants"] == {"refresh_token": 2}
        sandbox.oauth.expire_access_tokens()  # expired server-side only: a 401, then one refresh
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(read)
        assert sandbox.stats["token_grants"] == {"refresh_token": 3}
    finally:
        await c.aclose()


@pytest.mark.anyio
async def test_revoked_install_is_an_auth_error_naming_the_fix(
    sandbox: HubSpotSandbox, served: Any, fake: FakeTime
) -> None:
    c = oauth(served, fake, MemoryTokenStore())
    try:
        await c.ping()
        sandbox.oauth.revoke()
        with pytest.raises(AuthError) as denied:
            await c.ping()
        assert "CRM_MCP_HUBSPOT_REFRESH_TOKEN" in str(denied.value)
        assert SANDBOX_REFRESH_TOKEN not in str(denied.value) and SANDBOX_CLIENT_SECRET not in str(
            denied.value
        )
    finally:
        await c.aclose()

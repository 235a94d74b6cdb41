"""Zoho auth and limits over real HTTP: data-centre hosts, the Zoho-oauthtoken header, tokens
reused for their hour, the refresh limit (10 per 10 minutes), API credits per rolling 24 h, the
plan's concurrency cap, and 429s without Retry-After."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crm_mcp.errors import AuthError, ConfigurationError, RateLimitedError
from crm_mcp.providers.zoho import PROVIDER
from crm_mcp.providers.zoho.connector import ZohoConnector
from crm_mcp.providers.zoho.sandbox import ZohoSandbox
from crm_mcp.providers.zoho.sandbox_handle import ZohoSandboxHandle
from crm_mcp.providers.zoho.settings import DATA_CENTRES, ZohoSettings, endpoints
from tests.providers.support import FakeTime

pytestmark = pytest.mark.anyio


def test_each_data_centre_has_its_accounts_server_and_api_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sorted(DATA_CENTRES) == sorted(["US", "EU", "IN", "AU", "CN", "JP", "CA", "SA"])
    assert endpoints({"data_centre": "eu"}) == ("https://accounts.zoho.eu", "https://www.zohoapis.eu")
    assert endpoints({}) == ("https://accounts.zoho.com", "https://www.zohoapis.com")
    assert endpoints({"data_centre": "CA"})[0] == "https://accounts.zohocloud.ca"
    assert endpoints({"data_centre": "IN", "api_domain": "https://proxy.example.com"}) == (
        "https://accounts.zoho.in",
        "https://proxy.example.com",
    )
    with pytest.raises(ConfigurationError):
        endpoints({"data_centre": "XX"})
    monkeypatch.setenv("CRM_MCP_ZOHO_DATA_CENTRE", "jp")
    monkeypatch.setenv("CRM_MCP_ZOHO_API_VERSION", "V7")
    monkeypatch.setenv("CRM_MCP_ZOHO_ACCOUNTS_URL", "http://example.com")  # plain http only to loopback
    with pytest.raises(ValueError, match="https"):
        ZohoSettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("CRM_MCP_ZOHO_ACCOUNTS_URL", "https://accounts.zoho.jp")
    s = ZohoSettings(_env_file=None)  # type: ignore[call-arg]
    assert (s.data_centre, s.api_version, s.configured()) == ("JP", "v7", False)


def oauth(handle: ZohoSandboxHandle, **over: Any) -> dict[str, Any]:
    options = handle.oauth_options()
    assert options is not None
    return {**options, **over}


async def test_the_access_token_is_reused_until_it_expires(
    make: Any, handle: ZohoSandboxHandle, sim: ZohoSandbox, fake: FakeTime
) -> None:
    conn: ZohoConnector = make(oauth(handle))
    await asyncio.gather(*(conn.ping() for _ in range(10)))
    for _ in range(20):
        await conn.ping()
    assert handle.token_grants() == 1  # never per request
    fake.now += 3600 - 299  # within the 5-minute skew of its hour: refreshed before use
    await conn.ping()
    assert handle.token_grants() == 2


async def test_the_org_lives_in_one_data_centre(
    make: Any, handle: ZohoSandboxHandle, sim: ZohoSandbox
) -> None:
    url = handle.url
    wrong_accounts = make(oauth(handle, accounts_url=f"{url}/accounts.zoho.eu"))
    with pytest.raises(AuthError, match="refresh token was refused"):
        await wrong_accounts.ping()  # Zoho answers 200 {"error": "invalid_code"}
    good = make(oauth(handle))
    await good.ping()
    assert sim.accounts.grants["refresh_token"] == 1
    # a US token at the EU API domain is unknown there
    wrong_api = make(oauth(handle, api_domain=f"{url}/www.zohoapis.eu"))
    with pytest.raises(AuthError):
        await wrong_api.ping()
    eu = ZohoSandbox(data_centre="EU")
    assert eu.hosts(url) == (f"{url}/accounts.zoho.eu", f"{url}/www.zohoapis.eu")


async def test_the_eleventh_refresh_in_ten_minutes_is_refused_before_it_is_sent(
    make: Any, handle: ZohoSandboxHandle, sim: ZohoSandbox, fake: FakeTime
) -> None:
    conn: ZohoConnector = make(oauth(handle))
    for _ in range(10):
        handle.expire_tokens()  # server-side: every call meets a 401 and refreshes once
        await conn.ping()
    assert handle.token_grants() == 10
    handle.expire_tokens()
    with pytest.raises(RateLimitedError) as refused:
        await conn.ping()
    assert refused.value.retryable and refused.value.retry_after and refused.value.retry_after > 0
    assert handle.token_grants() == 10 and sim.accounts.grants["denied"] == 0  # never sent
    fake.now += 601  # the window rolls over
    await conn.ping()
    assert handle.token_grants() == 11


async def test_zohos_own_refresh_refusal_is_a_rate_limit(
    make: Any, handle: ZohoSandboxHandle, sim: ZohoSandbox
) -> None:
    sim.accounts.refresh_limit = 1  # another client of the same refresh token spent the window
    first: ZohoConnector = make(oauth(handle))
    await first.ping()
    second: ZohoConnector = make(oauth(handle))
    with pytest.raises(RateLimitedError, match="too many refreshes"):
        await second.ping()
    assert sim.accounts.grants["denied"] == 1
    sim.accounts.refresh_limit = 10


async def test_credits_are_learnt_from_the_header_and_exhaustion_is_a_rate_limit(
    make: Any, zoho: ZohoConnector, sim: ZohoSandbox
) -> None:
    sim.credits.limit = 10
    for _ in range(4):
        await zoho.ping()
    assert zoho.snapshot()["limiter"]["daily_remaining"] is None  # Zoho is silent below half
    await zoho.ping()  # half used: X-API-CREDITS-REMAINING from now on
    assert zoho.snapshot()["limiter"]["daily_remaining"] == 5
    for _ in range(5):
        await zoho.ping()
    with pytest.raises(RateLimitedError) as spent:  # refused here, without spending a call on a 429
        await zoho.ping()
    assert sim.stats["GET /org"] == 10 and sim.stats["429_credits"] == 0
    # credits free as they age out of the rolling 24 h, at no announced time: look again in ten
    # minutes, not at 00:00 UTC
    assert spent.value.retry_after is not None and 590 < spent.value.retry_after <= 600
    other: ZohoConnector = make()  # a connection that has not heard: Zoho's 429 (no Retry-After)
    with pytest.raises(RateLimitedError):
        await other.ping()
    assert sim.stats["429_credits"] >= 1


async def test_a_429_without_retry_after_backs_off(
    zoho: ZohoConnector, sim: ZohoSandbox, fake: FakeTime
) -> None:
    sim.faults.set("rate_limit", count=2)
    await zoho.ping()
    assert sum(fake.sleeps) > 0 and sim.faults.describe()["faults"] == []


async def test_the_concurrency_cap_keeps_calls_under_the_plans_limit(
    make: Any, handle: ZohoSandboxHandle, sim: ZohoSandbox
) -> None:
    sim.concurrency, sim.latency_s = 3, 0.05
    within: ZohoConnector = make(concurrency=3)
    await asyncio.gather(*(within.ping() for _ in range(12)))
    assert sim.stats["429_concurrency"] == 0
    over: ZohoConnector = make(concurrency=12)  # more than the plan allows: Zoho answers 429
    await asyncio.gather(*(over.ping() for _ in range(12)), return_exceptions=True)
    assert sim.stats["429_concurrency"] > 0
    assert PROVIDER.connector is not None
    plan = PROVIDER.connector("z", {**handle.connection_options(), "plan": "free"})
    assert isinstance(plan, ZohoConnector) and plan._slots._value == 5
    assert plan.client.limiter.snapshot() and plan.client.spec.daily_limit == 5_000
    await plan.aclose()

"""The HubSpot `Provider` declaration: registry, connector factory, setup template, sandbox handle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from crm_mcp.connectors.base import Connector, Tags, capabilities_of, require
from crm_mcp.connectors.registry import build_connector, get_provider
from crm_mcp.errors import CapabilityError, ConfigurationError
from crm_mcp.providers.hubspot import PROVIDER
from crm_mcp.providers.hubspot.connector import HubSpotConnector
from crm_mcp.providers.hubspot.sandbox_handle import HubSpotSandboxHandle
from crm_mcp.providers.hubspot.spec import HUBSPOT_SPEC
from crm_mcp.providers.hubspot.webhooks import HubSpotWebhooks


@pytest.fixture(scope="module")
def handle() -> Iterator[HubSpotSandboxHandle]:
    assert PROVIDER.sandbox is not None
    h = PROVIDER.sandbox(0)
    assert isinstance(h, HubSpotSandboxHandle)
    yield h
    h.stop()


def test_declaration() -> None:
    assert get_provider("hubspot") is PROVIDER
    assert PROVIDER.capabilities == frozenset(
        {
            "contacts",
            "notes",
            "tasks",
            "appointments",
            "custom_fields",
            "batch",
            "phone_lookup",
            "call_activities",
        }
    )
    assert PROVIDER.spec is not None and PROVIDER.spec() is HUBSPOT_SPEC
    assert PROVIDER.setup is not None
    assert PROVIDER.setup.webhook_events == ("contact.creation", "contact.propertyChange", "contact.deletion")
    scopes = {s for group in PROVIDER.setup.scopes.values() for s in group}
    assert {"crm.objects.contacts.read", "crm.objects.contacts.write", "crm.schemas.contacts.read"} <= scopes
    assert "find_free_slots" not in PROVIDER.setup.scopes  # no calendars in HubSpot's CRM API


@pytest.mark.parametrize(
    ("options", "match"),
    [
        # a connection from crm-mcp.toml is told about its table, not about env vars
        ({}, r"token in its \[connections.hs\] table"),
        ({"client_secret": "webhooks-only"}, r"token in its \[connections.hs\] table"),
        ({"client_id": "abc", "client_secret": "s3cret-value"}, "refresh_token"),
        ({"client_id": "abc", "refresh_token": "r-123456"}, "client_secret"),
    ],
)
def test_factory_refuses_incomplete_options(options: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as refused:
        build_connector("hubspot", "hs", options)
    assert "hubspot connection 'hs'" in str(refused.value)
    with pytest.raises(ConfigurationError, match="https"):
        build_connector("hubspot", "hs", {"token": "pat-na1-x", "base_url": "http://example.com"})


def test_the_env_connection_is_told_about_env_vars() -> None:
    """Env vars make only the default connection, named after the provider."""
    with pytest.raises(ConfigurationError, match="CRM_MCP_HUBSPOT_TOKEN"):
        build_connector("hubspot", "hubspot", {})


@pytest.mark.anyio
async def test_factory_builds_token_and_oauth_connectors(handle: HubSpotSandboxHandle) -> None:
    options = handle.connection_options()
    conn = build_connector("hubspot", "hubspot", {**options, "client_secret": "only-for-webhooks"})
    try:
        assert isinstance(conn, HubSpotConnector) and isinstance(conn, Connector)
        await conn.ping()
        assert (conn.provider, conn.connection, conn.portal_id) == (
            "hubspot",
            "hubspot",
            options["portal_id"],
        )
        assert capabilities_of(conn) == PROVIDER.capabilities
        with pytest.raises(CapabilityError, match="tags"):
            require(conn, Tags)
    finally:
        await conn.aclose()
    from crm_mcp.providers.hubspot.sandbox import (
        SANDBOX_CLIENT_ID,
        SANDBOX_CLIENT_SECRET,
        SANDBOX_REFRESH_TOKEN,
    )

    oauth = build_connector(
        "hubspot",
        "hs-oauth",
        {
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "refresh_token": SANDBOX_REFRESH_TOKEN,
            "base_url": handle.url,
            "portal_id": options["portal_id"],
        },
    )
    try:
        await oauth.ping()
        assert handle.sim.stats["token_grants"].get("refresh_token") == 1
    finally:
        await oauth.aclose()


@pytest.mark.anyio
async def test_ping_refuses_credentials_of_another_portal(handle: HubSpotSandboxHandle) -> None:
    conn = build_connector("hubspot", "hs", {**handle.connection_options(), "portal_id": "999"})
    try:
        with pytest.raises(ConfigurationError, match="portal"):
            await conn.ping()
    finally:
        await conn.aclose()


def test_handle_credentials_and_webhook_secret(handle: HubSpotSandboxHandle) -> None:
    options = handle.connection_options()
    lines = handle.credentials_text()
    assert f"CRM_MCP_HUBSPOT_BASE_URL={handle.url}" in lines
    assert f"CRM_MCP_HUBSPOT_PORTAL_ID={options['portal_id']}" in lines
    assert all(line.startswith("CRM_MCP_HUBSPOT_") for line in lines)
    handle.set_limits(burst=150, interval_ms=10_000)
    assert handle.sim.limit_settings()["burst_max"] == 150
    handle.set_limits(burst=100)
    # the app_secret it hands out verifies the simulator's signed webhooks, for its own portal
    url = "https://crm.example.com/webhooks/hubspot/hubspot"
    (cid,) = handle.sim.seed_contacts([{"email": "hook@example.com"}])
    event = handle.sim.contact_event(cid, "contact.creation")
    now = datetime.now(UTC)
    body, headers = handle.sim.webhook_delivery(url, [event], timestamp=now)
    adapter = HubSpotWebhooks()
    verified = adapter.verify(options, method="POST", url=url, headers=headers, body=body, now=now)
    (incoming,) = adapter.events(json.loads(body), body, verified, now)
    assert adapter.tenant(incoming.payload) == options["portal_id"]

"""The RingCentral provider as the registry, the settings and the config generator see it."""

from __future__ import annotations

import pytest

from crm_mcp.connectors.provider import render_config
from crm_mcp.connectors.registry import build_connector, get_provider
from crm_mcp.errors import ConfigurationError
from crm_mcp.providers.ringcentral.connector import RingCentralConnector
from crm_mcp.providers.ringcentral.settings import RingCentralSettings, media_url_for


def test_it_is_registered_as_a_telephony_provider() -> None:
    provider = get_provider("ringcentral")
    assert provider.capabilities == frozenset({"call_logs"}) and provider.sandbox is not None
    assert provider.webhooks is None


def test_settings_come_from_crm_mcp_ringcentral_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_MCP_RINGCENTRAL_CLIENT_ID", "cid")
    monkeypatch.setenv("CRM_MCP_RINGCENTRAL_CLIENT_SECRET", "csecret-123")
    monkeypatch.setenv("CRM_MCP_RINGCENTRAL_JWT", "eyJ.jwt.value")
    monkeypatch.setenv("CRM_MCP_RINGCENTRAL_BASE_URL", "https://platform.devtest.ringcentral.com")
    settings = RingCentralSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.configured()
    options = settings.options()
    assert options["jwt"] == "eyJ.jwt.value" and options["account_id"] == "~"
    conn = build_connector("ringcentral", "ringcentral", options)
    assert isinstance(conn, RingCentralConnector)
    assert conn.media_url == "https://media.devtest.ringcentral.com"  # derived from the platform host


def test_media_host_follows_the_platform_host() -> None:
    assert media_url_for("https://platform.ringcentral.com") == "https://media.ringcentral.com"
    assert media_url_for("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def test_plain_http_is_refused_beyond_loopback() -> None:
    with pytest.raises(ValueError):
        RingCentralSettings(_env_file=None, media_url="http://media.example.com")  # type: ignore[call-arg]


def test_a_connection_without_a_jwt_or_refresh_token_says_what_is_missing() -> None:
    with pytest.raises(ConfigurationError) as missing:
        build_connector("ringcentral", "rc", {"client_id": "x", "client_secret": "y"})
    assert "CRM_MCP_RINGCENTRAL_JWT" in missing.value.message


def test_generated_config_masks_the_secrets() -> None:
    text = render_config(
        get_provider("ringcentral"), "ringcentral",
        {"client_id": "cid", "client_secret": "s3cret-value", "jwt": "eyJ.secret.jwt"}, "env",
    )  # fmt: skip
    assert "CRM_MCP_RINGCENTRAL_CLIENT_ID=cid" in text
    assert "s3cret-value" not in text and "eyJ.secret.jwt" not in text

"""Zoho CRM's default connection from CRM_MCP_ZOHO_* env vars (or `.env`), named `zoho`.

The same keys, without the prefix, make a `[connections.<name>]` table with `provider = "zoho"` in
crm-mcp.toml. A Zoho org lives in one data centre; its accounts server (OAuth) and API domain
follow from `data_centre` unless `accounts_url` / `api_domain` say otherwise (a proxy, the sandbox).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import SecretStr, field_validator

from crm_mcp.connectors.provider import ProviderSettings, provider_settings_config
from crm_mcp.errors import ConfigurationError

# data centre -> (accounts server, API domain); crm-apis.md §2.1 (CA/SA API domains unverified)
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "US": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "EU": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "IN": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "AU": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "CN": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "JP": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "CA": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "SA": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
}
API_VERSIONS = ("v8", "v7")
DEFAULT_ACCOUNTS_URL, DEFAULT_API_DOMAIN = DATA_CENTRES["US"]
# Zoho's plans: concurrent calls per org per app, and API credits per rolling 24 h (crm-apis.md §2.11)
PLAN_CONCURRENCY = {"free": 5, "standard": 10, "professional": 15, "enterprise": 20, "ultimate": 25}
PLAN_CREDITS = {"free": 5_000, "standard": 50_000, "professional": 50_000, "enterprise": 50_000}


def endpoints(options: dict[str, Any]) -> tuple[str, str]:
    """(accounts server, API domain) for a connection's options: explicit URLs win over the
    data centre, which defaults to US.

    Raises:
        ConfigurationError: an unknown data centre.
    """
    dc = str(options.get("data_centre") or "US").strip().upper()
    if dc not in DATA_CENTRES:
        raise ConfigurationError(f"zoho data_centre {dc!r} is not one of {', '.join(DATA_CENTRES)}")
    accounts, api = DATA_CENTRES[dc]
    return (options.get("accounts_url") or accounts), (options.get("api_domain") or api)


class ZohoSettings(ProviderSettings):
    model_config = provider_settings_config("ZOHO")
    secret_options: ClassVar[frozenset[str]] = frozenset(
        {"token", "client_secret", "refresh_token", "channel_token"}
    )
    url_fields: ClassVar[tuple[str, ...]] = ("accounts_url", "api_domain")

    data_centre: str = "US"
    accounts_url: str | None = None
    api_domain: str | None = None
    api_version: str = "v8"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    # a ready access token instead of OAuth (a Self Client's one-hour token; the sandbox)
    token: SecretStr | None = None
    # the Notifications channel this connection watches, and the token it echoes back
    channel_id: str | None = None
    channel_token: SecretStr | None = None
    # the org's edition: its concurrency cap and daily API credits (overridable one by one)
    plan: str = "enterprise"
    concurrency: int | None = None
    daily_credits: int | None = None

    @field_validator("data_centre")
    @classmethod
    def _dc(cls, value: str) -> str:
        dc = value.strip().upper()
        if dc not in DATA_CENTRES:
            raise ValueError(f"data_centre must be one of {', '.join(DATA_CENTRES)}")
        return dc

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value.strip().lower() not in API_VERSIONS:
            raise ValueError(f"api_version must be one of {', '.join(API_VERSIONS)}")
        return value.strip().lower()

    @field_validator("plan")
    @classmethod
    def _plan(cls, value: str) -> str:
        if value.strip().lower() not in PLAN_CONCURRENCY:
            raise ValueError(f"plan must be one of {', '.join(PLAN_CONCURRENCY)}")
        return value.strip().lower()

    def configured(self) -> bool:
        return bool(self.client_id) or self.token is not None or bool(self.channel_id)

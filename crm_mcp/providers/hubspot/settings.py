"""HubSpot's default connection from CRM_MCP_HUBSPOT_* env vars (or `.env`), named `hubspot`.

The same keys, without the prefix, make a `[connections.<name>]` table with `provider = "hubspot"`
in crm-mcp.toml: token (private app) or client_id / client_secret / refresh_token (OAuth),
base_url, portal_id (the account webhooks must name) and app_secret (webhook v3 signatures;
defaults to client_secret, which is the same secret for a public app).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from crm_mcp.connectors.provider import ProviderSettings, provider_settings_config

DEFAULT_BASE_URL = "https://api.hubapi.com"


class HubSpotSettings(ProviderSettings):
    model_config = provider_settings_config("HUBSPOT")
    secret_options: ClassVar[frozenset[str]] = frozenset(
        {"token", "client_secret", "refresh_token", "app_secret"}
    )

    token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    portal_id: str | None = None
    app_secret: SecretStr | None = None

    def configured(self) -> bool:
        return self.token is not None or bool(self.client_id) or bool(self.portal_id)

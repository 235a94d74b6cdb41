"""GoHighLevel's default connection from CRM_MCP_GHL_* env vars (or `.env`), named `gohighlevel`.

The same keys, without the prefix, make a `[connections.<name>]` table with
`provider = "gohighlevel"` in crm-mcp.toml: token (Private Integration), location_id,
calendar_id, base_url, webhook_public_key, webhook_ed25519_public_key, respect_free_slots, and
client_id / client_secret / refresh_token for a Marketplace app install (OAuth).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from crm_mcp.connectors.provider import ProviderSettings, provider_settings_config

from .spec import DEFAULT_BASE_URL


class GoHighLevelSettings(ProviderSettings):
    model_config = provider_settings_config("GHL")
    secret_options: ClassVar[frozenset[str]] = frozenset({"token", "client_secret", "refresh_token"})

    token: SecretStr | None = None
    location_id: str | None = None
    calendar_id: str | None = None
    base_url: str = DEFAULT_BASE_URL
    webhook_public_key: str | None = None
    webhook_ed25519_public_key: str | None = None
    respect_free_slots: bool = False
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None

    def configured(self) -> bool:
        return self.token is not None or bool(self.location_id) or bool(self.client_id)

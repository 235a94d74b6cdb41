"""RingCentral's default connection from CRM_MCP_RINGCENTRAL_* env vars (or `.env`), named `ringcentral`.

The same keys, without the prefix, make a `[connections.<name>]` table with
`provider = "ringcentral"` in crm-mcp.toml: base_url (the platform server: production
`https://platform.ringcentral.com`, or `https://platform.devtest.ringcentral.com`), media_url
(where recordings are downloaded from; derived from base_url when unset), client_id /
client_secret, and either `jwt` (a JWT credential: the JWT grant, for server-to-server apps)
or `refresh_token` (an OAuth install; RingCentral rotates it on every refresh and the new one
is persisted), plus account_id (`~` = the account the credentials belong to).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from crm_mcp.connectors.provider import ProviderSettings, provider_settings_config

DEFAULT_BASE_URL = "https://platform.ringcentral.com"
DEFAULT_MEDIA_URL = "https://media.ringcentral.com"


def media_url_for(base_url: str) -> str:
    """The media host of a platform server: `platform.X` -> `media.X` (production and devtest)."""
    scheme, _, rest = base_url.partition("://")
    if rest.startswith("platform."):
        return f"{scheme}://media.{rest[len('platform.') :]}"
    return base_url  # a simulator serves both from one host


class RingCentralSettings(ProviderSettings):
    model_config = provider_settings_config("RINGCENTRAL")
    secret_options: ClassVar[frozenset[str]] = frozenset({"client_secret", "refresh_token", "jwt"})
    url_fields: ClassVar[tuple[str, ...]] = ("base_url", "media_url")

    client_id: str | None = None
    client_secret: SecretStr | None = None
    jwt: SecretStr | None = None
    refresh_token: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    media_url: str | None = None
    account_id: str = "~"

    def configured(self) -> bool:
        return bool(self.client_id) or self.jwt is not None or self.refresh_token is not None

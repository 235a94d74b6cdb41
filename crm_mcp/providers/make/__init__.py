"""Make: workflow hooks. Today its webhooks are received (Standard Webhooks, `whsec_` secrets,
several at once for rotation) and stored for automations; calling Make's own webhook URL comes next.

Env: CRM_MCP_MAKE_URL, CRM_MCP_MAKE_SECRET (or `webhook_secrets = [...]` in a
`[connections.<name>]` table with `provider = "make"`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from crm_mcp.connectors.provider import Provider, ProviderSettings, provider_settings_config
from crm_mcp.connectors.webhooks import StandardWebhookAdapter, WebhookAdapter


class MakeSettings(ProviderSettings):
    model_config = provider_settings_config("MAKE")
    secret_options: ClassVar[frozenset[str]] = frozenset({"webhook_secret", "header_value"})

    url: str | None = None
    secret: SecretStr | None = None

    def configured(self) -> bool:
        return bool(self.url) or self.secret is not None

    def options(self) -> dict[str, object]:
        out = super().options()
        out["webhook_secret"] = out.pop("secret")
        return out


def _webhooks() -> WebhookAdapter:
    return StandardWebhookAdapter("make")


PROVIDER = Provider(
    name="make",
    title="Make",
    env_prefix="MAKE",
    settings=MakeSettings,
    webhooks=_webhooks,
    url_options=("url",),
)

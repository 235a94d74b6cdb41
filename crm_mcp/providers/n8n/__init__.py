"""n8n: workflow hooks. Today its webhooks are received (Standard Webhooks, `whsec_` secrets,
several at once for rotation) and stored for automations; calling n8n's own webhook URL comes next.

Env: CRM_MCP_N8N_URL, CRM_MCP_N8N_SECRET (or `webhook_secrets = [...]` in a
`[connections.<name>]` table with `provider = "n8n"`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from crm_mcp.connectors.provider import Provider, ProviderSettings, provider_settings_config
from crm_mcp.connectors.webhooks import StandardWebhookAdapter, WebhookAdapter


class N8nSettings(ProviderSettings):
    model_config = provider_settings_config("N8N")
    secret_options: ClassVar[frozenset[str]] = frozenset({"webhook_secret", "header_value"})

    url: str | None = None
    header_name: str | None = None
    header_value: SecretStr | None = None
    secret: SecretStr | None = None

    def configured(self) -> bool:
        return bool(self.url) or self.secret is not None

    def options(self) -> dict[str, object]:
        out = super().options()
        out["webhook_secret"] = out.pop("secret")
        return out


def _webhooks() -> WebhookAdapter:
    return StandardWebhookAdapter("n8n")


PROVIDER = Provider(
    name="n8n",
    title="n8n",
    env_prefix="N8N",
    settings=N8nSettings,
    webhooks=_webhooks,
    url_options=("url",),
)

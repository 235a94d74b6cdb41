"""n8n: workflow hooks. Today its webhooks are received (Standard Webhooks, `whsec_` secrets,
several at once for rotation) and stored for automations; calling n8n's own webhook URL
(with an optional header) comes next.

Env: CRM_MCP_N8N_URL, CRM_MCP_N8N_HEADER_NAME / _HEADER_VALUE, CRM_MCP_N8N_SECRET (or
`webhook_secrets = [...]` in a `[connections.<name>]` table with `provider = "n8n"`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from crm_mcp.connectors.provider import HookSettings, hook_provider, provider_settings_config


class N8nSettings(HookSettings):
    model_config = provider_settings_config("N8N")
    secret_options: ClassVar[frozenset[str]] = frozenset({"webhook_secret", "header_value"})

    header_name: str | None = None
    header_value: SecretStr | None = None


PROVIDER = hook_provider("n8n", "n8n", "N8N", N8nSettings)

"""Make: workflow hooks. Today its webhooks are received (Standard Webhooks, `whsec_` secrets,
several at once for rotation) and stored for automations; calling Make's own webhook URL comes next.

Env: CRM_MCP_MAKE_URL, CRM_MCP_MAKE_SECRET (or `webhook_secrets = [...]` in a
`[connections.<name>]` table with `provider = "make"`).
"""

from __future__ import annotations

from crm_mcp.connectors.provider import HookSettings, hook_provider, provider_settings_config


class MakeSettings(HookSettings):
    model_config = provider_settings_config("MAKE")


PROVIDER = hook_provider("make", "Make", "MAKE", MakeSettings)

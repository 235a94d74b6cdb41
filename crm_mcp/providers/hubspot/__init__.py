"""HubSpot CRM v3: the provider declaration, registered as an entry point.

Everything about HubSpot lives in this package: `connector` (the calls; `objects` for the
activity objects), `wire` (pure neutral <-> wire mappers), `spec` (quirks as data), `settings`
(CRM_MCP_HUBSPOT_*), `setup` (scopes, webhook subscriptions, limits), `webhooks` (signature v3,
portal binding, neutral changes) and `sandbox/` (the simulator, behind `sandbox_handle`). Heavy
modules are imported by the factories below, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crm_mcp.connectors.provider import Provider
from crm_mcp.errors import ConfigurationError

from .settings import DEFAULT_BASE_URL, HubSpotSettings
from .setup import SETUP

if TYPE_CHECKING:
    from crm_mcp.connectors.base import Connector, ProviderSpec
    from crm_mcp.connectors.provider import SandboxHandle
    from crm_mcp.connectors.webhooks import WebhookAdapter


def _spec() -> ProviderSpec:
    from .spec import HUBSPOT_SPEC

    return HUBSPOT_SPEC


def auth_mode(connection: str, options: dict[str, Any]) -> str:
    """`oauth` when an app install is configured (client id + secret + refresh token or token
    store), `token` for a private app; ConfigurationError naming what is missing otherwise.

    A client secret alone does not mean OAuth: it may be there only to verify webhooks.
    """
    if options.get("client_id"):
        missing = [k for k in ("client_secret",) if not options.get(k)]
        if not (options.get("refresh_token") or options.get("token_store")):
            missing.append("refresh_token")
        if not missing:
            return "oauth"
        if not options.get("token"):
            raise ConfigurationError(
                f"hubspot connection {connection!r}: OAuth is missing {', '.join(missing)} "
                f"({_where(connection, missing)})"
            )
    if options.get("token"):
        return "token"
    oauth = _where(connection, ["client_id", "client_secret", "refresh_token"])
    raise ConfigurationError(
        f"hubspot connection {connection!r} needs a private app token or an OAuth app install "
        f"({_where(connection, ['token'])}; or {oauth})"
    )


def _where(connection: str, keys: list[str]) -> str:
    """Where to set `keys`: env vars make only the default connection, named after the provider."""
    if connection == "hubspot":
        return ", ".join(f"CRM_MCP_HUBSPOT_{k.upper()}" for k in keys) + " or its crm-mcp.toml keys"
    return f"{', '.join(keys)} in its [connections.{connection}] table in crm-mcp.toml"


def _connector(connection: str, options: dict[str, Any]) -> Connector:
    from crm_mcp.connectors.registry import client_kwargs

    from .connector import HubSpotConnector
    from .spec import HUBSPOT_SPEC

    mode = auth_mode(connection, options)
    kwargs = client_kwargs(HUBSPOT_SPEC, connection, options)
    if mode == "token":
        for key in ("client_id", "client_secret", "refresh_token", "token_store", "token_clock"):
            kwargs.pop(key, None)
    if options.get("base_url"):
        kwargs["base_url"] = options["base_url"]
    return HubSpotConnector(
        connection, token=options.get("token"), portal_id=options.get("portal_id"), **kwargs
    )


def _webhooks() -> WebhookAdapter:
    from .webhooks import HubSpotWebhooks

    return HubSpotWebhooks()


def _sandbox(port: int = 0) -> SandboxHandle:
    from .sandbox_handle import start_handle

    return start_handle(port=port)


PROVIDER = Provider(
    name="hubspot",
    title="HubSpot",
    env_prefix="HUBSPOT",
    settings=HubSpotSettings,
    capabilities=frozenset(
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
    ),
    spec=_spec,
    connector=_connector,
    webhooks=_webhooks,
    sandbox=_sandbox,
    setup=SETUP,
    default_base_url=DEFAULT_BASE_URL,
)

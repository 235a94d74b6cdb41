"""GoHighLevel (LeadConnector API v2): the provider declaration, registered as an entry point.

Everything about GoHighLevel lives in this package: `connector` (the calls), `wire` (pure
neutral <-> wire mappers), `spec` (quirks as data), `settings` (CRM_MCP_GHL_*), `setup` (scopes,
webhook events, limits), `webhooks` (verify, bind to the location, neutral changes) and
`sandbox/` (the simulator). Heavy modules are imported by the factories below, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crm_mcp.connectors.provider import Provider
from crm_mcp.errors import ConfigurationError

from .settings import GoHighLevelSettings
from .setup import SETUP

if TYPE_CHECKING:
    from crm_mcp.connectors.base import Connector, ProviderSpec
    from crm_mcp.connectors.provider import SandboxHandle
    from crm_mcp.connectors.webhooks import WebhookAdapter


def _spec() -> ProviderSpec:
    from .spec import GHL_SPEC

    return GHL_SPEC


def _connector(connection: str, options: dict[str, Any]) -> Connector:
    from crm_mcp.connectors.registry import client_kwargs

    from .connector import GoHighLevelConnector
    from .spec import GHL_SPEC

    oauth = bool(options.get("client_id") or options.get("client_secret"))
    needed = ("client_id", "client_secret", "location_id") if oauth else ("token", "location_id")
    missing = [k for k in needed if not options.get(k)]
    if oauth and not (options.get("refresh_token") or options.get("token_store")):
        missing.append("refresh_token")
    if missing:
        # the env vars make only the default connection, named after the provider
        where = (
            f"set {', '.join(f'CRM_MCP_GHL_{k.upper()}' for k in missing)}, or those keys in its "
            "crm-mcp.toml table"
            if connection == "gohighlevel"
            else f"set {', '.join(missing)} in its [connections.{connection}] table in crm-mcp.toml"
        )
        raise ConfigurationError(
            f"gohighlevel connection {connection!r} is missing {', '.join(missing)}: {where}."
        )
    kwargs = client_kwargs(GHL_SPEC, connection, options)
    if options.get("base_url"):
        kwargs["base_url"] = options["base_url"]
    if "respect_free_slots" in options:
        kwargs["respect_free_slots"] = bool(options["respect_free_slots"])
    return GoHighLevelConnector(
        connection, token=options.get("token"), location_id=options["location_id"], **kwargs
    )


def _webhooks() -> WebhookAdapter:
    from .webhooks import GoHighLevelWebhooks

    return GoHighLevelWebhooks()


def _sandbox(port: int = 0) -> SandboxHandle:
    from .sandbox import start_handle

    return start_handle(port=port)


PROVIDER = Provider(
    name="gohighlevel",
    title="GoHighLevel",
    env_prefix="GHL",
    aliases=("ghl", "highlevel", "leadconnector"),
    settings=GoHighLevelSettings,
    capabilities=frozenset(
        {"contacts", "tags", "notes", "tasks", "appointments", "calendars", "custom_fields"}
    ),
    spec=_spec,
    connector=_connector,
    webhooks=_webhooks,
    sandbox=_sandbox,
    setup=SETUP,
    default_base_url="https://services.leadconnectorhq.com",
)

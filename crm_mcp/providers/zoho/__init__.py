"""Zoho CRM (API v8 by default, v7 selectable): the provider declaration, registered as an entry point.

Everything about Zoho lives in this package: `connector` (people, batch, phone lookup, custom
fields) and `activities` (notes, tasks, events, calls, attachments), `wire` (pure mappers),
`auth` (Zoho-oauthtoken, the refresh limit), `spec` (quirks as data), `settings`
(CRM_MCP_ZOHO_*, data centres), `setup` (scopes, notification events, limits), `webhooks`
(Notifications API channels, verified by their token) and `sandbox/` (the simulator).

Ids: a neutral contact is a Leads record (the default module, where new people are created) or a
Contacts record. A lead's id is Zoho's record id as is; a contact's is `Contacts:<record id>`.
Searches, email and phone lookups cover both modules; activities link a lead by `What_Id` with
`$se_module` and a contact by `Who_Id`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crm_mcp.connectors.provider import Provider
from crm_mcp.errors import ConfigurationError

from .settings import DEFAULT_API_DOMAIN, PLAN_CONCURRENCY, PLAN_CREDITS, ZohoSettings, endpoints
from .setup import SETUP

if TYPE_CHECKING:
    from crm_mcp.connectors.base import Connector, ProviderSpec
    from crm_mcp.connectors.provider import SandboxHandle
    from crm_mcp.connectors.webhooks import WebhookAdapter

CAPABILITIES = frozenset(
    {"contacts", "batch", "phone_lookup", "notes", "tasks", "appointments", "call_activities"}
    | {"attachments", "custom_fields"}
)


def _spec() -> ProviderSpec:
    from .spec import ZOHO_SPEC

    return ZOHO_SPEC


def auth_mode(connection: str, options: dict[str, Any]) -> str:
    """`oauth` (client id + secret + refresh token or token store) or `token` (a ready access
    token); ConfigurationError naming what is missing otherwise."""
    oauth_app = options.get("client_id") and options.get("client_secret")
    if oauth_app and (options.get("refresh_token") or options.get("token_store")):
        return "oauth"
    if options.get("token"):
        return "token"
    raise ConfigurationError(
        f"zoho connection {connection!r} needs an OAuth client (CRM_MCP_ZOHO_CLIENT_ID, "
        "CRM_MCP_ZOHO_CLIENT_SECRET, CRM_MCP_ZOHO_REFRESH_TOKEN) in its data centre "
        "(CRM_MCP_ZOHO_DATA_CENTRE), or an access token (CRM_MCP_ZOHO_TOKEN)"
    )


def _connector(connection: str, options: dict[str, Any]) -> Connector:
    from crm_mcp.connectors.registry import client_kwargs

    from .connector import ZohoConnector
    from .spec import ZOHO_SPEC

    mode = auth_mode(connection, options)
    accounts, api = endpoints(options)
    kwargs = client_kwargs(ZOHO_SPEC, connection, options)
    if mode == "token":
        for key in ("client_id", "client_secret", "refresh_token", "token_store"):
            kwargs.pop(key, None)
    plan = str(options.get("plan") or "enterprise").lower()
    return ZohoConnector(
        connection,
        token=options.get("token"),
        accounts_url=accounts,
        api_domain=api,
        api_version=str(options.get("api_version") or "v8").lower(),
        concurrency=int(options.get("concurrency") or PLAN_CONCURRENCY.get(plan, 20)),
        daily_credits=int(options.get("daily_credits") or PLAN_CREDITS.get(plan, 50_000)),
        **kwargs,
    )


def _webhooks() -> WebhookAdapter:
    from .webhooks import ZohoWebhooks

    return ZohoWebhooks()


def _sandbox(port: int = 0) -> SandboxHandle:
    from .sandbox_handle import start_handle

    return start_handle(port=port)


PROVIDER = Provider(
    name="zoho",
    title="Zoho CRM",
    env_prefix="ZOHO",
    settings=ZohoSettings,
    capabilities=CAPABILITIES,
    aliases=("zohocrm", "zoho_crm"),
    spec=_spec,
    connector=_connector,
    webhooks=_webhooks,
    sandbox=_sandbox,
    setup=SETUP,
    default_base_url=DEFAULT_API_DOMAIN,
)

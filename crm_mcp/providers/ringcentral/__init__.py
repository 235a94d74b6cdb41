"""RingCentral: the telephony provider declaration, registered as an entry point.

RingCentral is a phone system, not a CRM: its connector has the `call_logs` capability (the
company call log as neutral call sessions, and their recordings) and no contacts. Everything
about it lives in this package: `connector` (the calls), `wire` (pure record <-> session
mapping), `spec` (quirks as data, its result words), `limits` (rate-limit groups), `auth`
(the JWT and refresh grants), `settings` (CRM_MCP_RINGCENTRAL_*), `setup` and `sandbox/` (the
simulator, behind `sandbox_handle`). Heavy modules are imported by the factories, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crm_mcp.connectors.provider import Provider
from crm_mcp.errors import ConfigurationError

from .settings import DEFAULT_BASE_URL, RingCentralSettings
from .setup import SETUP

if TYPE_CHECKING:
    from crm_mcp.connectors.base import Connector, ProviderSpec
    from crm_mcp.connectors.provider import SandboxHandle


def _spec() -> ProviderSpec:
    from .spec import RINGCENTRAL_SPEC

    return RINGCENTRAL_SPEC


def check_options(connection: str, options: dict[str, Any]) -> None:
    """Raises: ConfigurationError naming what a connection lacks (client id and secret, and a
    JWT credential or a refresh token / token store)."""
    missing = [k for k in ("client_id", "client_secret") if not options.get(k)]
    if not (options.get("jwt") or options.get("refresh_token") or options.get("token_store")):
        missing.append("jwt (or refresh_token)")
    if missing:
        raise ConfigurationError(
            f"ringcentral connection {connection!r} is missing {', '.join(missing)} "
            "(CRM_MCP_RINGCENTRAL_CLIENT_ID, CRM_MCP_RINGCENTRAL_CLIENT_SECRET, and "
            "CRM_MCP_RINGCENTRAL_JWT or CRM_MCP_RINGCENTRAL_REFRESH_TOKEN)"
        )


def _connector(connection: str, options: dict[str, Any]) -> Connector:
    from crm_mcp.connectors.registry import client_kwargs

    from .connector import RingCentralConnector
    from .spec import RINGCENTRAL_SPEC

    check_options(connection, options)
    kwargs = client_kwargs(RINGCENTRAL_SPEC, connection, options)
    if "limiter" not in options:  # a Redis-shared window has no groups: RingCentral's stay per process
        kwargs.pop("limiter", None)
    for key in ("jwt", "base_url", "media_url", "account_id", "page_size", "default_country_code"):
        if options.get(key):
            kwargs[key] = options[key]
    return RingCentralConnector(connection, **kwargs)


def _sandbox(port: int = 0) -> SandboxHandle:
    from .sandbox_handle import start_handle

    return start_handle(port=port)


PROVIDER = Provider(
    name="ringcentral",
    title="RingCentral",
    env_prefix="RINGCENTRAL",
    settings=RingCentralSettings,
    capabilities=frozenset({"call_logs"}),
    spec=_spec,
    connector=_connector,
    sandbox=_sandbox,
    setup=SETUP,
    default_base_url=DEFAULT_BASE_URL,
)

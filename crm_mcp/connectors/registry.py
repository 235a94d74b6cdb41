"""Build a connector from a provider name and plain options (env / crm-mcp.toml / stored connection).

Provider modules are imported lazily so that starting the server, or a provider that is not
configured, never pays for (or breaks on) another provider's imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from crm_mcp.errors import ConfigurationError

from .base import Connector, ProviderSpec

# options every provider's client understands (passed through to ResilientClient)
CLIENT_OPTIONS = frozenset(
    {"transport", "clock", "sleep", "limiter", "breaker", "rng"}
    | {"max_attempts", "max_retry_time_s", "timeout_s"}
)

# OAuth 2 with rotating refresh tokens; `token_store` persists them (state.credentials provides one)
OAUTH_OPTIONS = frozenset({"client_id", "client_secret", "refresh_token", "token_store", "token_clock"})


def _shared_guards(spec: ProviderSpec, connection: str, options: dict[str, Any]) -> dict[str, Any]:
    """With `redis_url`, a limiter and breaker shared by every process using this connection.

    An explicit `limiter` / `breaker` option wins (tests inject their own).
    """
    url = options.get("redis_url")
    if not url or ("limiter" in options and "breaker" in options):
        return {}
    from .shared_state import build_shared_guards

    # on Redis server time, so the real sleep: an injected virtual `sleep` would not match it
    guards = build_shared_guards(spec, connection, url, breaker="breaker" not in options)
    return {k: v for k, v in guards.items() if k not in options}


def _gohighlevel(connection: str, options: dict[str, Any]) -> Connector:
    module = importlib.import_module("crm_mcp.providers.gohighlevel.connector")
    oauth = bool(options.get("client_id") or options.get("client_secret"))
    needed = ("client_id", "client_secret", "location_id") if oauth else ("token", "location_id")
    missing = [k for k in needed if not options.get(k)]
    if oauth and not (options.get("refresh_token") or options.get("token_store")):
        missing.append("refresh_token")
    if missing:
        raise ConfigurationError(
            f"gohighlevel connection {connection!r} is missing {', '.join(missing)} "
            "(env CRM_MCP_GHL_TOKEN, or CRM_MCP_GHL_CLIENT_ID / CRM_MCP_GHL_CLIENT_SECRET / "
            "CRM_MCP_GHL_REFRESH_TOKEN for OAuth; and CRM_MCP_GHL_LOCATION_ID)"
        )
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if k in CLIENT_OPTIONS | OAUTH_OPTIONS}
    kwargs.update(_shared_guards(module.GHL_SPEC, connection, options))
    if options.get("base_url"):
        kwargs["base_url"] = options["base_url"]
    if "respect_free_slots" in options:
        kwargs["respect_free_slots"] = bool(options["respect_free_slots"])
    connector: Connector = module.GoHighLevelConnector(
        connection, token=options.get("token"), location_id=options["location_id"], **kwargs
    )
    return connector


_FACTORIES: dict[str, Callable[[str, dict[str, Any]], Connector]] = {"gohighlevel": _gohighlevel}
_ALIASES = {"ghl": "gohighlevel", "highlevel": "gohighlevel", "leadconnector": "gohighlevel"}


def supported_providers() -> list[str]:
    return sorted(_FACTORIES)


def build_connector(provider: str, connection: str, options: dict[str, Any]) -> Connector:
    """The connector for `provider` named `connection`; ConfigurationError if unknown or incomplete."""
    name = _ALIASES.get(provider.strip().lower(), provider.strip().lower())
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigurationError(
            f"unknown CRM provider {provider!r}; supported: {', '.join(supported_providers())}"
        )
    return factory(connection, dict(options))

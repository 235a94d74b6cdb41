"""The provider registry: every `Provider` registered in the entry-point group `crm_mcp.providers`.

The built-in providers register the same way as a third party's package would (see this
project's pyproject.toml), so there is one path for all of them. Entry points are read once per
process; each names a small module whose `PROVIDER` declaration refers to the heavy parts by
factory, so listing providers never imports a connector or a simulator.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import entry_points
from typing import Any

from crm_mcp.errors import ConfigurationError

from .base import Connector, ProviderSpec
from .provider import Provider
from .webhooks import WebhookAdapter

log = logging.getLogger(__name__)

GROUP = "crm_mcp.providers"

# options every provider's client understands (passed through to ResilientClient)
CLIENT_OPTIONS = frozenset(
    {"transport", "clock", "sleep", "limiter", "breaker", "rng"}
    | {"max_attempts", "max_retry_time_s", "timeout_s"}
)

# OAuth 2 with refresh tokens; `token_store` persists rotated ones (state.credentials provides one)
OAUTH_OPTIONS = frozenset({"client_id", "client_secret", "refresh_token", "token_store", "token_clock"})


@functools.cache
def _registered() -> dict[str, Provider]:
    found: dict[str, Provider] = {}
    for ep in entry_points(group=GROUP):
        try:
            provider = ep.load()
        except Exception:  # one broken third-party provider must not take the others down
            log.exception("provider entry point %r could not be loaded; skipped", ep.value)
            continue
        if not isinstance(provider, Provider):
            log.error("entry point %r is not a crm_mcp Provider; skipped", ep.value)
            continue
        found.setdefault(provider.name, provider)
    return found


def providers() -> list[Provider]:
    """Every registered provider, by name."""
    return [p for _, p in sorted(_registered().items())]


def supported_providers() -> list[str]:
    return sorted(_registered())


def get_provider(name: str) -> Provider:
    """The provider called `name` (or one of its aliases); ConfigurationError when unknown."""
    wanted = name.strip().lower()
    for provider in _registered().values():
        if wanted == provider.name or wanted in provider.aliases:
            return provider
    raise ConfigurationError(f"unknown CRM provider {name!r}; supported: {', '.join(supported_providers())}")


def webhook_adapter(name: str) -> WebhookAdapter | None:
    """The provider's webhook adapter, or None when the provider is unknown or receives none."""
    try:
        p = get_provider(name)
    except ConfigurationError:
        return None
    return p.webhooks() if p.webhooks is not None else None


def shared_guards(spec: ProviderSpec, connection: str, options: dict[str, Any]) -> dict[str, Any]:
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


def client_kwargs(spec: ProviderSpec, connection: str, options: dict[str, Any]) -> dict[str, Any]:
    """The ResilientClient and OAuth options a connector factory passes on, shared guards included."""
    kwargs = {k: v for k, v in options.items() if k in CLIENT_OPTIONS | OAUTH_OPTIONS}
    kwargs.update(shared_guards(spec, connection, options))
    return kwargs


def build_connector(provider: str, connection: str, options: dict[str, Any]) -> Connector:
    """The connector for `provider` named `connection`.

    Raises:
        ConfigurationError: the provider is unknown, has no connector (webhooks only), or the
            options are incomplete.
    """
    p = get_provider(provider)
    if p.connector is None:
        raise ConfigurationError(
            f"{p.title} connections only receive webhooks; connection {connection!r} has no CRM API to call."
        )
    return p.connector(connection, dict(options))

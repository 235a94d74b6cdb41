"""What a provider package declares: `Provider`, its settings base, its sandbox and setup hooks.

A provider package (`crm_mcp/providers/<name>/`, or a third party's own distribution) exposes one
`Provider` through the entry-point group `crm_mcp.providers`. Everything the engine, the tools,
the CLI and the tests need to know about a provider comes from that declaration, so nothing
outside the package names it. The heavy parts (connector, webhook adapter, simulator) are
referenced as factories and imported on first use: listing providers costs one small module each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crm_mcp.errors import ConfigurationError

if TYPE_CHECKING:
    from datetime import datetime

    from crm_mcp.sandbox.faults import FaultInjector
    from crm_mcp.sandbox.runner import SandboxServer

    from .base import Connector, ProviderSpec
    from .webhooks import WebhookAdapter


class ProviderSettings(BaseSettings):
    """A provider's default connection from `CRM_MCP_<PREFIX>_*` env vars (and `.env`).

    Subclasses set `model_config = provider_settings_config("GHL")`, declare their fields, and
    implement `configured()` (whether any of them is set) and `options()` (the connection options,
    the same keys a `[connections.<name>]` table in crm-mcp.toml takes). Secret fields are SecretStr.
    """

    model_config = SettingsConfigDict(extra="ignore")
    # TOML / option keys whose values are secrets (masked in generated config, registered for redaction)
    secret_options: ClassVar[frozenset[str]] = frozenset()
    # options that are URLs: https only, plain http for loopback (also checked in crm-mcp.toml tables)
    url_fields: ClassVar[tuple[str, ...]] = ("base_url",)

    @model_validator(mode="after")
    def _urls(self) -> Self:
        from .http import check_base_url

        for name in self.url_fields:
            value = getattr(self, name, None)
            if value:
                try:
                    setattr(self, name, check_base_url(str(value)))
                except ConfigurationError as exc:
                    raise ValueError(exc.message) from exc
        return self

    def configured(self) -> bool:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Every field as a plain connection option (secrets revealed: they go to the connector)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return out

    def secrets(self) -> list[str]:
        return [
            v.get_secret_value()
            for v in (getattr(self, n) for n in type(self).model_fields)
            if isinstance(v, SecretStr)
        ]


def provider_settings_config(prefix: str) -> SettingsConfigDict:
    """The settings config of a provider whose env vars are CRM_MCP_<prefix>_*."""
    return SettingsConfigDict(
        env_prefix=f"CRM_MCP_{prefix}_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )


class SandboxHandle(Protocol):
    """A running simulator: its URL, the connection options that reach it, and how to stop it.

    The rest is what the conformance suite (tests/providers/test_conformance.py) drives, so every
    provider is held to the same cases without the suite naming one:

    - `sim`: the simulator object itself (provider-specific; for what this protocol does not name).
    - `faults`: its switchable faults (`crm_mcp.sandbox.faults.FaultInjector`) on API calls.
    - `connection_options()`: a connection with the simulator's static credentials, its tenant
      (`ProviderSpec.tenant_option`) and what verifies its webhooks (public keys, app secret).
    - `oauth_options()`: a connection through an OAuth app install instead (client id and
      secret, a refresh token that works now, no static token); None when the provider has none.
    - `expire_tokens()`: every access token issued so far stops working now, server-side (the
      client's own expiry clock does not know); `token_grants()` counts the refresh grants made.
    - `contact_count()`: live contacts, as the CRM sees them (not through a connector).
    - `webhook_delivery(url, tenant=, timestamp=)`: the body and headers of one contact event
      POSTed to `url`, signed as the provider signs it; for the connection's tenant, or for
      `tenant` (another account's id); at `timestamp` (default now).
    - `reset()`: forget records, faults, stats, rate-limit windows and issued tokens; the
      seeded schema (custom fields, calendars) and the limits set stay.
    """

    url: str

    @property
    def sim(self) -> Any: ...
    @property
    def faults(self) -> FaultInjector: ...
    def connection_options(self) -> dict[str, Any]: ...
    def credentials_text(self) -> list[str]: ...
    def set_limits(self, *, burst: int | None = None, interval_ms: int | None = None) -> None:
        """Change the simulated burst limit (requests per window) and window."""
        ...

    def oauth_options(self) -> dict[str, Any] | None: ...
    def expire_tokens(self) -> None: ...
    def token_grants(self) -> int: ...
    def contact_count(self) -> int: ...
    def webhook_delivery(
        self, url: str, *, tenant: str | None = None, timestamp: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]: ...
    def reset(self) -> None: ...
    def stop(self) -> None: ...


class Simulator(Protocol):
    """What `SimulatorHandle` needs of a simulator."""

    @property
    def faults(self) -> FaultInjector: ...
    def reset(self) -> None: ...


SimT = TypeVar("SimT", bound=Simulator)


class SimulatorHandle(Generic[SimT]):
    """The part of a `SandboxHandle` every provider's does the same way: the simulator and its
    server (`crm_mcp.sandbox.runner.SandboxServer`), its faults, reset and stop."""

    def __init__(self, sim: SimT, server: SandboxServer) -> None:
        self.sim = sim
        self.server = server
        self.url = server.url

    @property
    def faults(self) -> FaultInjector:
        return self.sim.faults

    def reset(self) -> None:
        self.sim.reset()

    def stop(self) -> None:
        self.server.stop()


@dataclass(frozen=True)
class SetupTemplate:
    """What the connector config generator needs: token scopes per tool group, the webhook
    events to subscribe to, the limits to expect, and the options a connection takes.

    `option_patterns` maps an option to (regex its value must fully match, an example value),
    so a pasted id of the wrong shape is refused before it reaches a config file.
    """

    scopes: Mapping[str, tuple[str, ...]]
    webhook_events: tuple[str, ...]
    limits: str
    required_options: tuple[str, ...]
    optional_options: tuple[str, ...] = ()
    auth_note: str = ""
    option_patterns: Mapping[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Provider:
    """A CRM (or workflow tool) crm-mcp can talk to. Quirks are data in `spec`; code is behind factories.

    `connector(connection, options)` builds the connector (ConfigurationError when options are
    incomplete); `webhooks()` returns the adapter that verifies, binds and parses its webhooks;
    `sandbox(port)` starts its simulator. `capabilities` are the names in `connectors.base.CAPABILITIES`
    its connector implements, known without building one (the runtime picks connections by them).
    """

    name: str
    title: str
    env_prefix: str
    settings: type[ProviderSettings]
    capabilities: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    spec: Callable[[], ProviderSpec] | None = None
    connector: Callable[[str, dict[str, Any]], Connector] | None = None
    webhooks: Callable[[], WebhookAdapter] | None = None
    sandbox: Callable[[int], SandboxHandle] | None = None
    setup: SetupTemplate | None = None
    default_base_url: str = ""


def render_config(
    provider: Provider, name: str, options: Mapping[str, Any], fmt: str, *, masked: Mapping[str, str] = {}
) -> str:
    """A connection's config as `.env` lines (the provider's default connection) or a crm-mcp.toml
    table. Secret options never come out: each is a `<placeholder>` (or `masked[key]`, e.g. a
    token's first characters), so the text is safe to show and to paste.

    Raises:
        ConfigurationError: an option the provider does not take, or a value with a line break,
            quote or other control character (it would inject lines into the file).
    """
    from crm_mcp.errors import ConfigurationError

    fields = provider.settings.model_fields
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigurationError(
            f"{provider.title} connections take no option {', '.join(unknown)}; "
            f"they take: {', '.join(fields)}"
        )
    secret = provider.settings.secret_options
    values: dict[str, str] = {}
    for key in fields:
        if key in secret and (key in options or (provider.setup and key in provider.setup.required_options)):
            values[key] = masked.get(key, f"<your {key.replace('_', ' ')}>")
        elif options.get(key) not in (None, ""):
            value = str(options[key])
            if any(ch in value for ch in '"\\') or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise ConfigurationError(f"{key}: quotes, backslashes and control characters are not allowed")
            values[key] = value
    if fmt == "env":
        return "".join(f"CRM_MCP_{provider.env_prefix}_{k.upper()}={v}\n" for k, v in values.items())
    lines = [f"[connections.{name}]", f'provider = "{provider.name}"']
    lines += [f'{k} = "{v}"' for k, v in values.items()]
    return "\n".join(lines) + "\n"


class HookSettings(ProviderSettings):
    """A workflow tool's connection (n8n, Make, ...): the URL we call, and the Standard Webhooks
    secret its deliveries to us are signed with (`webhook_secret`; several in crm-mcp.toml as
    `webhook_secrets = [...]`, for rotation)."""

    secret_options: ClassVar[frozenset[str]] = frozenset({"webhook_secret"})
    url_fields: ClassVar[tuple[str, ...]] = ("url",)

    url: str | None = None
    secret: SecretStr | None = None

    def configured(self) -> bool:
        return bool(self.url) or self.secret is not None

    def options(self) -> dict[str, Any]:
        out = super().options()
        out["webhook_secret"] = out.pop("secret")
        return out


def hook_provider(name: str, title: str, env_prefix: str, settings: type[HookSettings]) -> Provider:
    """The declaration of a workflow tool that (today) only sends us Standard Webhooks."""

    def webhooks() -> WebhookAdapter:
        from .webhooks import StandardWebhookAdapter

        return StandardWebhookAdapter(name)

    return Provider(name=name, title=title, env_prefix=env_prefix, settings=settings, webhooks=webhooks)

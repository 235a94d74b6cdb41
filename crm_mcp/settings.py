"""Settings from environment variables `CRM_MCP_*`, a `.env` file, and an optional `crm-mcp.toml`.

Precedence (highest first): explicit overrides, environment, `.env`, `crm-mcp.toml`, defaults.
Each registered provider contributes its own settings model (`CRM_MCP_<PREFIX>_*`, see its
package's `settings.py`); a connection configured that way is named after its provider. More
connections come from `[connections.<name>]` tables in `crm-mcp.toml`, each with a `provider` key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crm_mcp.errors import ConfigurationError, register_secret


def default_state_dir() -> Path:
    """The per-user state directory (XDG on Linux, ~/Library on macOS, %LOCALAPPDATA% on Windows)."""
    if env := os.environ.get("XDG_STATE_HOME"):
        return Path(env) / "crm-mcp"
    home = Path.home()
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "crm-mcp"
    if os.uname().sysname == "Darwin":
        return home / "Library" / "Application Support" / "crm-mcp"
    return home / ".local" / "state" / "crm-mcp"


# a Host header value: a DNS name, an IPv4 address or a bracketed IPv6 one, with an optional port
_HOST_NAME = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:[0-9]{1,5})?$"
)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, setting: str) -> str:
    """HTTPS everywhere; plain http only for loopback (sandbox, local proxies). Names the setting."""
    from crm_mcp.connectors.http import check_base_url as check

    try:
        return check(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{setting}: {exc.message}") from None


class ConnectionSettings(BaseModel):
    """One configured CRM connection. `options` hold provider-specific values (token, location id...)."""

    name: str
    provider: str
    options: dict[str, Any] = Field(default_factory=dict)

    def secret_values(self) -> list[str]:
        return [
            str(v)
            for k, v in self.options.items()
            if any(s in k for s in ("token", "secret", "key", "password")) and v
        ]


class HealthThresholdSettings(BaseModel):
    min_success_rate: float = 0.90
    max_dead_letters: int = 50
    max_latency_s: float = 3.0
    max_oldest_pending_s: float = 900.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_MCP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(None, description="SQLAlchemy async URL; default SQLite in state_dir")
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    http_token: SecretStr | None = None
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names (comma-separated, optionally with :port) the HTTP transports answer "
        "besides loopback and the bound address, e.g. the public name behind a reverse proxy.",
    )
    state_dir: Path = Field(default_factory=default_state_dir)
    config_file: Path | None = Field(None, description="Path of crm-mcp.toml (default ./crm-mcp.toml)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sandbox: bool = False
    default_connection: str | None = Field(
        None, description="The connection tools use when several could serve a call and none is named."
    )

    # sync engine
    worker_concurrency: int = Field(4, ge=1, le=64)
    sync_deadline_seconds: float = Field(24 * 3600, gt=0)
    sync_max_attempts: int = Field(12, ge=1)
    sync_backoff_base_seconds: float = Field(2.0, gt=0)
    sync_backoff_cap_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)
    poll_interval_seconds: float = Field(0.5, gt=0)

    health: HealthThresholdSettings = Field(default_factory=HealthThresholdSettings)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not _HOST_NAME.match(h)]
        if bad:
            raise ValueError(
                f"{bad[0]!r} is not a host name: give names such as crm.example.com or "
                "crm.example.com:8443 (no scheme, path or wildcard)"
            )
        return [h.lower() for h in value]

    # provider name -> overrides for its settings model (load_settings routes `<prefix>_*` keys here)
    _provider_overrides: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _provider_settings: dict[str, Any] = PrivateAttr(default_factory=dict)

    def provider_settings(self, name: str) -> Any:
        """The named provider's settings (env vars, `.env`, and any overrides given to load_settings)."""
        if name not in self._provider_settings:
            from crm_mcp.connectors.registry import get_provider

            provider = get_provider(name)
            overrides = self._provider_overrides.get(provider.name, {})
            self._provider_settings[name] = _build(
                provider.settings, f"CRM_MCP_{provider.env_prefix}", overrides
            )
        return self._provider_settings[name]

    def with_provider(self, name: str, **values: Any) -> Settings:
        """A copy whose provider `name` has these settings (e.g. pointed at its sandbox)."""
        copy = self.model_copy()
        copy._provider_overrides = {
            **self._provider_overrides,
            name: {**self._provider_overrides.get(name, {}), **values},
        }
        copy._provider_settings = {}
        return copy

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.state_dir / 'crm-mcp.db'}"

    def _toml(self) -> dict[str, Any]:
        path = self.config_file or Path("crm-mcp.toml")
        if not path.exists():
            if self.config_file is not None:
                raise ConfigurationError(f"CRM_MCP_CONFIG_FILE={path} does not exist.")
            return {}
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc

    def connections(self) -> list[ConnectionSettings]:
        """Every configured connection: each provider's env-var default first, then crm-mcp.toml tables."""
        from crm_mcp.connectors.registry import get_provider, providers

        out: list[ConnectionSettings] = []
        for provider in providers():
            ps = self.provider_settings(provider.name)
            if ps.configured():
                out.append(
                    ConnectionSettings(name=provider.name, provider=provider.name, options=ps.options())
                )
        for name, table in (self._toml().get("connections") or {}).items():
            if not isinstance(table, dict) or "provider" not in table:
                raise ConfigurationError(f"[connections.{name}] in crm-mcp.toml needs a `provider` key.")
            provider = get_provider(str(table["provider"]))
            opts = {k: v for k, v in table.items() if k != "provider"}
            for key in provider.settings.url_fields:
                if key in opts:
                    opts[key] = check_base_url(str(opts[key]), setting=f"connections.{name}.{key}")
            out.append(ConnectionSettings(name=name, provider=provider.name, options=opts))
        seen: set[str] = set()
        for c in out:
            if c.name in seen:
                raise ConfigurationError(f"Connection name {c.name!r} is configured twice.")
            seen.add(c.name)
            for secret in c.secret_values():
                register_secret(secret)
        return out


def _build(model: Any, env_prefix: str, overrides: dict[str, Any]) -> Any:
    """A provider's settings model from the environment plus overrides, one readable error if invalid."""
    from pydantic import ValidationError

    try:
        return model(**overrides)
    except ValidationError as exc:
        lines = [
            f"{env_prefix}_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigurationError("Invalid settings:\n  " + "\n  ".join(lines)) from None


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation errors into one readable ConfigurationError."""
    from pydantic import ValidationError

    from crm_mcp.connectors.registry import providers

    # `<prefix>_<field>` overrides (e.g. ghl_token=...) belong to that provider's settings model
    routed: dict[str, dict[str, Any]] = {}
    for provider in providers():
        prefix = provider.env_prefix.lower() + "_"
        for key in [k for k in overrides if k.startswith(prefix)]:
            routed.setdefault(provider.name, {})[key[len(prefix) :]] = overrides.pop(key)
        if "_env_file" in overrides:  # the same .env (or none) for every settings model
            routed.setdefault(provider.name, {})["_env_file"] = overrides["_env_file"]
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = [f"CRM_MCP_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        raise ConfigurationError("Invalid settings:\n  " + "\n  ".join(lines)) from None
    settings._provider_overrides = routed
    secrets = [settings.secret_key, settings.http_token]
    for secret in secrets:
        if secret is not None:
            register_secret(secret.get_secret_value())
    for provider in providers():
        for value in settings.provider_settings(provider.name).secrets():
            register_secret(value)
    return settings

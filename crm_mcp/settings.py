"""Settings from environment variables `CRM_MCP_*`, a `.env` file, and an optional `crm-mcp.toml`.

Precedence (highest first): explicit overrides, environment, `.env`, `crm-mcp.toml`, defaults.
A connection configured from `CRM_MCP_GHL_*` is named `gohighlevel`; more connections come from
`[connections.<name>]` tables in `crm-mcp.toml`, each with a `provider` key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from crm_mcp.errors import ConfigurationError, register_secret

GHL_DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"


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
    """HTTPS everywhere; plain http only for loopback (sandbox, local proxies)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url.rstrip("/")
    raise ConfigurationError(
        f"{setting}={url!r} is not allowed: use an https:// URL (plain http:// only for 127.0.0.1/localhost)."
    )


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
    state_dir: Path = Field(default_factory=default_state_dir)
    config_file: Path | None = Field(None, description="Path of crm-mcp.toml (default ./crm-mcp.toml)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sandbox: bool = False

    # GoHighLevel default connection
    ghl_token: SecretStr | None = None
    ghl_location_id: str | None = None
    ghl_calendar_id: str | None = None
    ghl_base_url: str = GHL_DEFAULT_BASE_URL
    ghl_webhook_public_key: str | None = None
    ghl_webhook_ed25519_public_key: str | None = None
    ghl_respect_free_slots: bool = False
    # GoHighLevel OAuth (Marketplace app install) instead of a Private Integration token
    ghl_client_id: str | None = None
    ghl_client_secret: SecretStr | None = None
    ghl_refresh_token: SecretStr | None = None

    # sync engine
    worker_concurrency: int = Field(4, ge=1, le=64)
    sync_deadline_seconds: float = Field(24 * 3600, gt=0)
    sync_max_attempts: int = Field(12, ge=1)
    sync_backoff_base_seconds: float = Field(2.0, gt=0)
    sync_backoff_cap_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)
    poll_interval_seconds: float = Field(0.5, gt=0)

    health: HealthThresholdSettings = Field(default_factory=HealthThresholdSettings)

    @field_validator("ghl_base_url")
    @classmethod
    def _ghl_url(cls, v: str) -> str:
        try:
            return check_base_url(v, setting="CRM_MCP_GHL_BASE_URL")
        except ConfigurationError as exc:
            raise ValueError(exc.message) from exc

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
        """Every configured connection: the env-var defaults first, then crm-mcp.toml tables."""
        out: list[ConnectionSettings] = []
        if self.ghl_token is not None or self.ghl_location_id or self.ghl_client_id:
            out.append(
                ConnectionSettings(
                    name="gohighlevel",
                    provider="gohighlevel",
                    options={
                        "token": self.ghl_token.get_secret_value() if self.ghl_token else None,
                        "location_id": self.ghl_location_id,
                        "calendar_id": self.ghl_calendar_id,
                        "base_url": self.ghl_base_url,
                        "webhook_public_key": self.ghl_webhook_public_key,
                        "webhook_ed25519_public_key": self.ghl_webhook_ed25519_public_key,
                        "respect_free_slots": self.ghl_respect_free_slots,
                        "client_id": self.ghl_client_id,
                        "client_secret": _secret(self.ghl_client_secret),
                        "refresh_token": _secret(self.ghl_refresh_token),
                    },
                )
            )
        for name, table in (self._toml().get("connections") or {}).items():
            if not isinstance(table, dict) or "provider" not in table:
                raise ConfigurationError(f"[connections.{name}] in crm-mcp.toml needs a `provider` key.")
            opts = {k: v for k, v in table.items() if k != "provider"}
            if "base_url" in opts:
                opts["base_url"] = check_base_url(
                    str(opts["base_url"]), setting=f"connections.{name}.base_url"
                )
            out.append(ConnectionSettings(name=name, provider=str(table["provider"]), options=opts))
        seen: set[str] = set()
        for c in out:
            if c.name in seen:
                raise ConfigurationError(f"Connection name {c.name!r} is configured twice.")
            seen.add(c.name)
            for secret in c.secret_values():
                register_secret(secret)
        return out


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation errors into one readable ConfigurationError."""
    from pydantic import ValidationError

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = [f"CRM_MCP_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        raise ConfigurationError("Invalid settings:\n  " + "\n  ".join(lines)) from None
    for secret in (
        settings.secret_key,
        settings.http_token,
        settings.ghl_token,
        settings.ghl_client_secret,
        settings.ghl_refresh_token,
    ):
        if secret is not None:
            register_secret(secret.get_secret_value())
    return settings

"""Settings from environment variables `CRM_MCP_*`, `.env` files, and an optional `crm-mcp.toml`.

Where they are found (`crm-mcp config show` prints which were read):

- `.env`: the user config directory's (`$XDG_CONFIG_HOME/crm-mcp/.env`, default
  `~/.config/crm-mcp/.env`) and the working directory's; both are read, the working
  directory's wins for a variable both set.
- `crm-mcp.toml`: one file, the first of `$CRM_MCP_CONFIG` (or `$CRM_MCP_CONFIG_FILE`), the
  working directory's, the user config directory's. Its top-level keys are settings (the env
  names without `CRM_MCP_`, lower case); its `[connections.<name>]` tables are connections.

Precedence (highest first): explicit overrides, environment, `.env` (working directory, then user
config directory), `crm-mcp.toml`, defaults. A process started elsewhere (Claude Desktop starts
it from `/`) still finds the user config directory, or the file `$CRM_MCP_CONFIG` names.
Each registered provider contributes its own settings model (`CRM_MCP_<PREFIX>_*`, see its
package's `settings.py`); a connection configured that way is named after its provider. More
connections come from `[connections.<name>]` tables in `crm-mcp.toml`, each with a `provider` key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from crm_mcp.errors import ConfigurationError, register_secret
from crm_mcp.scope import READ_SCOPE, WRITE_SCOPE

CONFIG_FILE_NAME = "crm-mcp.toml"


def user_config_dir() -> Path:
    """The per-user config directory: `$XDG_CONFIG_HOME/crm-mcp`, default `~/.config/crm-mcp`
    (`%APPDATA%\\crm-mcp` on Windows)."""
    if env := os.environ.get("XDG_CONFIG_HOME"):
        return Path(env) / "crm-mcp"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "crm-mcp"
    return Path.home() / ".config" / "crm-mcp"


@dataclass(frozen=True)
class ConfigSource:
    """A place configuration was looked for: `read`, `absent`, or `skipped` (a TOML file that
    exists but is not used because one with higher precedence is)."""

    path: Path
    kind: Literal["toml", "env"]
    origin: str
    status: Literal["read", "absent", "skipped"]


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


DEFAULT_HTTP_SCOPES = (READ_SCOPE, WRITE_SCOPE)


def redact_url(url: str | None) -> str | None:
    """A URL with its password replaced by *** (database and Redis URLs carry one)."""
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def _words(value: Any) -> Any:
    """A list given as one string, separated by commas or spaces (scopes, algorithms)."""
    return value.replace(",", " ").split() if isinstance(value, str) else value


class HttpTokenSettings(BaseModel):
    """One static bearer token for the HTTP transports (CRM_MCP_HTTP_TOKENS) and the principal it
    speaks for; its length is checked when `serve` starts (crm_mcp.server.auth)."""

    name: str = Field("default", pattern=r"^[A-Za-z0-9_.@:-]{1,64}$")
    token: SecretStr
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_HTTP_SCOPES))

    @field_validator("scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: Any) -> Any:
        return _words(value)


def _http_token_entries(value: Any) -> Any:
    """CRM_MCP_HTTP_TOKENS as `name=token` pairs or bare tokens (comma or newline separated), a JSON
    list (of strings or {name, token, scopes} objects), or a TOML/JSON table name -> token | {...}."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            import json

            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        else:
            value = [e.strip() for e in re.split(r"[,\n]", text) if e.strip()]
    if isinstance(value, dict):
        value = [
            {"name": name, **(entry if isinstance(entry, dict) else {"token": entry})}
            for name, entry in value.items()
        ]
    if not isinstance(value, list):
        return value
    out: list[Any] = []
    for entry in value:
        if isinstance(entry, str):
            name, sep, token = entry.partition("=")
            entry = {"name": name.strip(), "token": token.strip()} if sep else {"token": entry.strip()}
        out.append(entry)
    return out


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
    secret_key_previous: SecretStr | None = Field(
        None,
        description="Keys replaced by CRM_MCP_SECRET_KEY, comma-separated: decrypt only, until "
        "`crm-mcp secrets rotate` is done",
    )
    http_token: SecretStr | None = None
    http_tokens: Annotated[list[HttpTokenSettings], NoDecode] = Field(
        default_factory=list,
        description="Static bearer tokens accepted at once (rotation): name=token pairs or bare tokens, "
        "comma-separated, or JSON [{name, token, scopes}] (docs/oauth.md)",
    )
    public_url: str | None = Field(
        None, description="The server's public base URL (https://crm.example.com), named in OAuth metadata"
    )
    oauth_issuer: str | None = Field(
        None, description="OAuth authorization server (issuer URL) whose JWT access tokens /mcp accepts"
    )
    oauth_audience: str | None = Field(
        None, description="The `aud` access tokens must carry (default: the public /mcp URL)"
    )
    oauth_jwks_url: str | None = Field(None, description="JWKS URL (default: the issuer's metadata jwks_uri)")
    oauth_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["RS256", "ES256"], description="Accepted JWT signature algorithms"
    )
    oauth_leeway_seconds: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on nbf/iat")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names (comma-separated, optionally with :port) the HTTP transports answer "
        "besides loopback and the bound address, e.g. the public name behind a reverse proxy.",
    )
    read_only: bool = Field(False, description="Register only the read tools (`serve --read-only`)")
    toolsets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Only these toolsets' tools (comma-separated; `serve --toolsets`; see SECURITY.md)",
    )
    state_dir: Path = Field(default_factory=default_state_dir)
    config_file: Path | None = Field(
        None,
        description="Path of crm-mcp.toml (also CRM_MCP_CONFIG; default: ./crm-mcp.toml, else the "
        "user config directory's)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text", "auto"] = Field(
        "auto", description="Log lines on stderr: json, text, or auto (text on a terminal, else JSON)."
    )
    otel_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector URL (e.g. http://127.0.0.1:4318): export traces there."
    )
    sandbox: bool = False
    default_connection: str | None = Field(
        None, description="The connection tools use when several could serve a call and none is named."
    )

    # sync engine
    worker_concurrency: int = Field(4, ge=1, le=64)
    worker_per_connection: int | None = Field(
        None,
        ge=1,
        description="At most this many operations of one connection in flight at once, across all "
        "workers (default: per connection, as many as its rate limit keeps busy: its requests per "
        "second x the latency seen x 2, at least 2; claims are round robin across connections "
        "either way)",
    )
    retention_days: float = Field(
        30.0,
        ge=0,
        description="Delete succeeded operations, their log and processed webhook events "
        "older than this many days (dead letters stay until retried or resolved); 0: keep everything",
    )
    sync_deadline_seconds: float = Field(24 * 3600, gt=0)
    sync_max_attempts: int = Field(12, ge=1)
    sync_backoff_base_seconds: float = Field(2.0, gt=0)
    sync_backoff_cap_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)
    poll_interval_seconds: float = Field(0.5, gt=0)
    # connection checks (crm_mcp.preflight): at start, then this often; 0 = at start only
    preflight_interval_seconds: float = Field(600.0, ge=0)
    # the health verdict judges delivery over this recent window (it recovers when deliveries do)
    health_window_seconds: float = Field(3600.0, gt=0)

    health: HealthThresholdSettings = Field(default_factory=HealthThresholdSettings)

    # the call-log pipeline: a telephony connection's calls logged on a CRM connection's records
    calls_interval: float = Field(
        300.0, ge=0, description="Seconds (or 90s, 5m, 1h) between the worker's call-log pulls; 0: off"
    )
    calls_source: str | None = Field(None, description="The telephony connection (default: the only one)")
    calls_target: str | None = Field(
        None,
        description="The CRM connection calls are logged on (default: the only one with call activities)",
    )
    calls_match: Literal["last_updated", "earliest_created", "all"] = "last_updated"
    calls_create_leads: Literal["always", "inbound", "never"] = "always"
    calls_blocklist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Numbers or extensions never logged (comma-separated)"
    )
    calls_owners: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="Extension -> CRM owner id, as 101=owner-id,102=owner-id"
    )
    calls_fallback_owner: str | None = None
    calls_missed_task: bool = True
    calls_max_recording_mb: float = Field(25.0, gt=0)
    calls_lookback_hours: float = Field(24.0, gt=0, description="How far back the first pull reaches")
    calls_settle_seconds: float = Field(60.0, ge=0, description="Calls younger than this wait a pull")

    # per-principal limits on the HTTP transport (crm_mcp.server.limits, docs/tenants.md); 0: off
    rate_limit_per_minute: float = Field(
        120.0, ge=0, description="Tool calls per minute per principal over HTTP (429 beyond); 0: off"
    )
    rate_limit_burst: int = Field(30, ge=1, description="Tool calls a principal may make at once")
    webhook_rate_limit_per_minute: float = Field(
        600.0, ge=0, description="Webhook deliveries per minute per connection and source IP; 0: off"
    )
    webhook_rate_limit_burst: int = Field(100, ge=1)
    max_sessions: int = Field(200, ge=1, description="Open MCP sessions over HTTP (503 beyond)")

    def previous_secret_keys(self) -> list[str]:
        """CRM_MCP_SECRET_KEY_PREVIOUS as a list (comma-separated)."""
        raw = self.secret_key_previous.get_secret_value() if self.secret_key_previous else ""
        return [p.strip() for p in raw.split(",") if p.strip()]

    @field_validator("calls_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", value)):
            return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        return value

    @field_validator("calls_blocklist", "toolsets", "allowed_hosts", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("calls_owners", mode="before")
    @classmethod
    def _owner_map(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().startswith("{"):
            import json

            return json.loads(value)
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        if any(not sep for _k, sep, _v in pairs):
            raise ValueError("give extension=owner-id pairs separated by commas, e.g. 101=123,102=456")
        return {k.strip(): v.strip() for k, _sep, v in pairs}

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if not value:
            return value
        scheme, sep, _ = value.partition("://")
        if not sep:
            raise ValueError(
                "not a database URL: use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASS@HOST/DB"
            )
        if scheme in ("postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
            raise ValueError(
                f"write postgresql+asyncpg:// instead of {scheme}:// (crm-mcp uses the asyncpg driver)"
            )
        if scheme == "sqlite":
            raise ValueError(
                "write sqlite+aiosqlite:// instead of sqlite:// (crm-mcp uses the aiosqlite driver)"
            )
        if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError(
                f"{scheme}:// is not supported: use sqlite+aiosqlite:/// or postgresql+asyncpg://"
            )
        return value

    @field_validator("http_tokens", mode="before")
    @classmethod
    def _http_tokens(cls, value: Any) -> Any:
        return _http_token_entries(value)

    @field_validator("oauth_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: Any) -> Any:
        return _words(value)

    @field_validator("oauth_algorithms")
    @classmethod
    def _check_algorithms(cls, value: list[str]) -> list[str]:
        allowed = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
        bad = [a for a in value if a not in allowed]
        if bad or not value:
            raise ValueError(
                f"{(bad or ['(none)'])[0]!r} is not accepted: give asymmetric algorithms among "
                f"{', '.join(allowed)} (never none or HS*)"
            )
        return value

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
    # set by load_settings: the places configuration was looked for, and the TOML file in use
    _sources: list[ConfigSource] | None = PrivateAttr(default=None)
    _toml_path: Path | None = PrivateAttr(default=None)
    _toml_keys: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def config_sources(self) -> list[ConfigSource]:
        """Where configuration was looked for, highest precedence first (see the module docstring)."""
        return list(self._sources or [])

    @property
    def toml_path(self) -> Path | None:
        """The crm-mcp.toml in use, if any."""
        return self._toml_path if self._sources is not None else self._legacy_toml_path()

    def setting_origin(self, name: str) -> str:
        """Where a setting's value came from: an env var, a .env file, the TOML file, or default."""
        if name in self._toml_keys:
            return str(self._toml_path)
        if f"CRM_MCP_{name.upper()}" in {k.upper() for k in os.environ}:
            return "environment"
        if name in self.model_fields_set:
            return (
                ".env" if any(s.kind == "env" and s.status == "read" for s in self.config_sources) else "set"
            )
        return "default"

    def _legacy_toml_path(self) -> Path | None:
        path = self.config_file or Path(CONFIG_FILE_NAME)
        if not path.exists():
            if self.config_file is not None:
                raise ConfigurationError(f"CRM_MCP_CONFIG_FILE={path} does not exist.")
            return None
        return path

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
        path = self.toml_path
        return _read_toml(path) if path is not None else {}

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
                raise ConfigurationError(f"[connections.{name}] in {self.toml_path} needs a `provider` key.")
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

    def principals(self) -> dict[str, PrincipalSettings]:
        """The `[principals.<name>]` tables of crm-mcp.toml: which connections (and, optionally,
        which scopes) each principal gets. Empty: no tenants, every principal sees everything.

        Raises:
            ConfigurationError: a table is malformed or names a connection that does not exist.
        """
        from pydantic import ValidationError

        tables = self._toml().get("principals") or {}
        if not isinstance(tables, dict):
            raise ConfigurationError(f"`principals` in {self.toml_path} must be [principals.<name>] tables.")
        known = {c.name for c in self.connections()}
        out: dict[str, PrincipalSettings] = {}
        for name, table in tables.items():
            try:
                out[name] = PrincipalSettings.model_validate(table)
            except ValidationError as exc:
                why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ConfigurationError(f"[principals.{name}] in {self.toml_path}: {why}") from None
            if unknown := [c for c in out[name].connections if c not in known and c != "*"]:
                raise ConfigurationError(
                    f"[principals.{name}] in {self.toml_path} names no configured connection "
                    f"{unknown[0]!r}; configured: {', '.join(sorted(known)) or 'none'}."
                )
        return out


class PrincipalSettings(BaseModel):
    """`[principals.<name>]`: the connections a principal may use (`["*"]`: every one, an
    operator), and optionally its scopes (a ceiling: the token's own scopes still apply)."""

    model_config = {"extra": "forbid"}

    connections: list[str] = Field(default_factory=list)
    scopes: list[Literal["crm:read", "crm:write"]] | None = None


def _build(model: Any, env_prefix: str, overrides: dict[str, Any]) -> Any:
    """A provider's settings model from the environment plus overrides, one readable error if invalid."""
    from pydantic import ValidationError

    try:
        return model(**overrides)
    except ValidationError as exc:
        lines = [
            f"{env_prefix}_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigurationError("Invalid setting " + "; ".join(lines)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}; fix that line.") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None


def _env_sources(cwd: Path, user: Path) -> list[ConfigSource]:
    """The .env files, highest precedence first (the working directory's, then the user's)."""
    out: list[ConfigSource] = []
    for path, origin in ((cwd / ".env", "working directory"), (user / ".env", "user config directory")):
        if any(s.path == path for s in out):
            continue
        out.append(ConfigSource(path, "env", origin, "read" if path.is_file() else "absent"))
    return out


def _toml_sources(explicit: Path | None, explicit_var: str, cwd: Path, user: Path) -> list[ConfigSource]:
    """Candidate crm-mcp.toml files, highest precedence first; the first that exists is read."""
    candidates: list[tuple[Path, str]] = []
    if explicit is not None:
        candidates.append((explicit.expanduser().absolute(), explicit_var))
    else:
        candidates += [
            (cwd / CONFIG_FILE_NAME, "working directory"),
            (user / CONFIG_FILE_NAME, "user config directory"),
        ]
    out: list[ConfigSource] = []
    found = False
    for path, origin in candidates:
        if any(s.path == path for s in out):
            continue
        exists = path.is_file()
        status: Literal["read", "absent", "skipped"] = "absent"
        if exists:
            status = "skipped" if found else "read"
            found = True
        out.append(ConfigSource(path, "toml", origin, status))
    return out


def _did_you_mean(name: str, choices: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _settings(overrides: dict[str, Any], *, toml: Path | None = None, toml_keys: Any = ()) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"])
            where = (
                f"{toml}: {field}"
                if toml is not None and str(e["loc"][0]) in toml_keys
                else f"CRM_MCP_{'_'.join(str(p) for p in e['loc']).upper()}"
            )
            lines.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("Invalid setting " + "; ".join(lines)) from None


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning validation errors into one readable ConfigurationError.

    `_env_file` (None for no .env at all) and `config_file` override discovery, as in tests.
    """
    from crm_mcp.connectors.registry import providers

    cwd, user = Path.cwd(), user_config_dir()
    sources: list[ConfigSource] = []
    if "_env_file" not in overrides:
        env_sources = _env_sources(cwd, user)
        sources += env_sources
        # pydantic-settings: later files win, missing ones are skipped
        overrides["_env_file"] = tuple(s.path for s in reversed(env_sources))
    explicit_var = "CRM_MCP_CONFIG_FILE"
    if "config_file" not in overrides and os.environ.get("CRM_MCP_CONFIG"):
        overrides["config_file"] = Path(os.environ["CRM_MCP_CONFIG"])
        explicit_var = "CRM_MCP_CONFIG"

    # `<prefix>_<field>` overrides (e.g. ghl_token=...) belong to that provider's settings model
    routed: dict[str, dict[str, Any]] = {}
    for provider in providers():
        prefix = provider.env_prefix.lower() + "_"
        for key in [k for k in overrides if k.startswith(prefix)]:
            routed.setdefault(provider.name, {})[key[len(prefix) :]] = overrides.pop(key)
        if "_env_file" in overrides:  # the same .env files (or none) for every settings model
            routed.setdefault(provider.name, {})["_env_file"] = overrides["_env_file"]
    settings = _settings(overrides)

    toml_sources = _toml_sources(settings.config_file, explicit_var, cwd, user)
    sources += toml_sources
    if settings.config_file is not None and toml_sources[0].status == "absent":
        raise ConfigurationError(
            f"{explicit_var}={settings.config_file} does not exist: fix the path or unset it."
        )
    toml_path = next((s.path for s in toml_sources if s.status == "read"), None)
    toml_keys: frozenset[str] = frozenset()
    if toml_path is not None:
        data = _read_toml(toml_path)
        top = {k: v for k, v in data.items() if k not in ("connections", "principals")}
        allowed = set(Settings.model_fields) - {"config_file"}
        for key in top:
            if key not in allowed:
                raise ConfigurationError(
                    f"{toml_path}: unknown setting {key!r}{_did_you_mean(key, allowed)}; top-level keys "
                    "are settings (env names without CRM_MCP_, lower case), connections go in "
                    "[connections.<name>] tables."
                )
        fill = {k: v for k, v in top.items() if k not in settings.model_fields_set}
        if fill:
            toml_keys = frozenset(fill)
            settings = _settings({**overrides, **fill}, toml=toml_path, toml_keys=toml_keys)
    settings._provider_overrides = routed
    settings._sources = sources
    settings._toml_path = toml_path
    settings._toml_keys = toml_keys
    secrets = [settings.secret_key, settings.http_token, *(t.token for t in settings.http_tokens)]
    secrets += [SecretStr(p) for p in settings.previous_secret_keys()]
    for secret in secrets:
        if secret is not None:
            register_secret(secret.get_secret_value())
    for provider in providers():
        for value in settings.provider_settings(provider.name).secrets():
            register_secret(value)
    return settings

"""Who may talk to the HTTP transports: the bearer-token rule and the Host/Origin check.

Two rules, one notion of "loopback" (`crm_mcp.settings.is_loopback_host`) for both:

- Token. Bound beyond loopback, `serve` needs credentials and refuses to start without valid
  ones: static tokens (CRM_MCP_HTTP_TOKEN, CRM_MCP_HTTP_TOKENS; `crm_mcp.server.auth`) and/or
  OAuth access tokens from CRM_MCP_OAUTH_ISSUER (`crm_mcp.server.oauth_rs`). Configured
  credentials are required on every bind, loopback included: a reverse proxy or tunnel on the
  same machine makes a loopback port reachable from anywhere, and an operator who set a token
  expects it to be asked for. `http_auth` turns the settings into an `HttpAuth`, or refuses.
- Host/Origin (DNS rebinding). A web page can make a browser send requests to any address, and
  a DNS name that its owner re-points at 127.0.0.1 (or at this host) makes them same-origin for
  the browser; only the Host and Origin headers give such requests away. The SDK turns the check
  on by itself only for the three loopback names it knows (127.0.0.1, localhost, ::1), so
  `--host 127.0.0.2` or `0.0.0.0` once answered any Host. Here every HTTP bind gets the SDK's
  own `TransportSecuritySettings`: loopback names, the bound address itself, and the names in
  CRM_MCP_ALLOWED_HOSTS (the public name behind a proxy) are accepted; anything else is 421
  (Host) or 403 (Origin).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from mcp.server.transport_security import TransportSecuritySettings

from crm_mcp.errors import ConfigurationError
from crm_mcp.server.auth import StaticToken, check_http_token
from crm_mcp.settings import Settings, check_base_url, is_loopback_host

if TYPE_CHECKING:
    from mcp.server.auth.provider import TokenVerifier
    from mcp.server.auth.settings import AuthSettings

    from crm_mcp.server.oauth_rs import OAuthConfig

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class HttpAuth:
    """The credentials the HTTP transports accept: static tokens, OAuth access tokens, or both."""

    static: tuple[StaticToken, ...] = ()
    oauth: OAuthConfig | None = None

    def verifier(self) -> TokenVerifier:
        """One MCP token verifier for all of them (static tokens are checked first).

        Raises:
            ConfigurationError: a static token is blank or short.
        """
        from crm_mcp.server.auth import ChainedTokenVerifier, StaticTokenVerifier

        if (built := self.__dict__.get("_verifier")) is not None:
            return built  # type: ignore[no-any-return]
        verifiers: list[TokenVerifier] = []
        if self.static:
            verifiers.append(StaticTokenVerifier(self.static))
        if self.oauth is not None:
            from crm_mcp.server.oauth_rs import JwtVerifier

            verifiers.append(JwtVerifier(self.oauth))
        if not verifiers:
            raise ConfigurationError("HTTP auth needs a static token or CRM_MCP_OAUTH_ISSUER")
        built = verifiers[0] if len(verifiers) == 1 else ChainedTokenVerifier(verifiers)
        object.__setattr__(self, "_verifier", built)  # one verifier (and one key cache) per server
        return built

    async def warm_up(self) -> None:
        """Load the OAuth issuer's signing keys now, logging what was found or why not."""
        if self.oauth is not None:
            from crm_mcp.server.oauth_rs import JwtVerifier

            verifier = self.verifier()
            for one in [verifier, *getattr(verifier, "verifiers", ())]:
                if isinstance(one, JwtVerifier):
                    await one.jwks.warm_up()

    def auth_settings(self) -> AuthSettings:
        """The SDK's settings: with OAuth, the resource URL (for the protected-resource metadata and
        `resource_metadata` in 401s) and the issuer; without, no metadata at all, since there is no
        authorization server to point at (the issuer URL is then unused by the SDK)."""
        from mcp.server.auth.settings import AuthSettings

        if self.oauth is None:
            return AuthSettings(issuer_url="http://127.0.0.1", resource_server_url=None)  # type: ignore[arg-type]
        return AuthSettings(
            issuer_url=self.oauth.issuer,  # type: ignore[arg-type]
            resource_server_url=self.oauth.resource_url,  # type: ignore[arg-type]
            validate_token_resource=False,  # JwtVerifier checks `aud` itself
        )


def http_auth(
    settings: Settings, transport: Literal["stdio", "sse", "http"], host: str, port: int = 8000
) -> HttpAuth | None:
    """What the HTTP transports must require, or None when they need nothing (stdio, or loopback
    with no credentials configured).

    Raises:
        ConfigurationError: bound beyond loopback with no credentials; a static token is blank or
            short (a blank CRM_MCP_HTTP_TOKEN counts as unset on loopback, where none is needed);
            the OAuth settings are incomplete or not https.
    """
    if transport == "stdio":
        return None
    loopback = is_loopback_host(host)
    static = static_tokens(settings, loopback=loopback)
    oauth = oauth_config(settings, host, port)
    if not static and oauth is None:
        if loopback:
            return None
        raise ConfigurationError(
            f"Serving on {host} (beyond loopback) needs CRM_MCP_HTTP_TOKEN (or CRM_MCP_HTTP_TOKENS, or "
            "CRM_MCP_OAUTH_ISSUER): clients must send a bearer token. Set it, or bind 127.0.0.1."
        )
    return HttpAuth(tuple(static), oauth)


def static_tokens(settings: Settings, *, loopback: bool) -> list[StaticToken]:
    """The configured static tokens, each checked (at least 32 characters); no token twice."""
    out: list[StaticToken] = []
    if settings.http_token is not None:
        value = settings.http_token.get_secret_value()
        if value.strip() or not loopback:
            out.append(StaticToken("default", check_http_token(value)))
    for entry in settings.http_tokens:
        value = check_http_token(
            entry.token.get_secret_value(), setting=f"CRM_MCP_HTTP_TOKENS (entry {entry.name!r})"
        )
        out.append(StaticToken(entry.name, value, tuple(entry.scopes)))
    tokens = [t.token for t in out]
    if len(set(tokens)) != len(tokens):
        raise ConfigurationError(
            "CRM_MCP_HTTP_TOKENS: a token is configured twice; give each principal its own."
        )
    return out


def oauth_config(settings: Settings, host: str, port: int) -> OAuthConfig | None:
    """The OAuth resource-server settings, or None without CRM_MCP_OAUTH_ISSUER."""
    from crm_mcp.server.oauth_rs import OAuthConfig

    issuer = (settings.oauth_issuer or "").strip()
    if not issuer:
        return None
    check_base_url(issuer, setting="CRM_MCP_OAUTH_ISSUER")
    resource = f"{public_url(settings, host, port, needed_by='CRM_MCP_OAUTH_ISSUER')}/mcp"
    jwks = (settings.oauth_jwks_url or "").strip() or None
    if jwks is not None:
        check_base_url(jwks, setting="CRM_MCP_OAUTH_JWKS_URL")
    return OAuthConfig(
        issuer=issuer,
        audience=(settings.oauth_audience or "").strip() or resource,
        resource_url=resource,
        jwks_url=jwks,
        algorithms=tuple(settings.oauth_algorithms),
        leeway_s=settings.oauth_leeway_seconds,
    )


def public_url(settings: Settings, host: str, port: int, *, needed_by: str) -> str:
    """The server's public base URL: CRM_MCP_PUBLIC_URL, or on loopback the bound address. A
    wildcard or LAN address is never named in metadata: beyond loopback the URL must be given.

    Raises:
        ConfigurationError: beyond loopback without CRM_MCP_PUBLIC_URL, or it is not https.
    """
    configured = (settings.public_url or "").strip()
    if configured:
        check_base_url(configured, setting="CRM_MCP_PUBLIC_URL")
        return configured.rstrip("/")
    if is_loopback_host(host):
        return f"http://{_bracketed(host)}:{port}"
    raise ConfigurationError(
        f"{needed_by} needs CRM_MCP_PUBLIC_URL when serving on {host}: the https URL clients reach this "
        "server at (e.g. https://crm.example.com), named in its OAuth metadata and the tokens' audience."
    )


def answered_hosts(settings: Settings) -> list[str]:
    """The Host names every HTTP surface (/mcp, the dashboard, the worker's) answers besides
    loopback and the bound address: CRM_MCP_ALLOWED_HOSTS and the host of CRM_MCP_PUBLIC_URL."""
    configured = (settings.public_url or "").strip()
    return [*settings.allowed_hosts, *([urlsplit(configured).netloc.lower()] if configured else [])]


def required_token(settings: Settings, transport: Literal["stdio", "sse", "http"], host: str) -> str | None:
    """The first static bearer token the HTTP transports must require, or None when they need none
    (for callers that accept one static token only; `http_auth` gives every credential).

    Raises:
        ConfigurationError: bound beyond loopback without a token, or a token is blank or short
            (a blank one counts as unset on loopback, where none is needed).
    """
    if transport == "stdio":
        return None
    loopback = is_loopback_host(host)
    static = static_tokens(settings, loopback=loopback)
    if not static and not loopback:
        raise ConfigurationError(
            f"Serving on {host} (beyond loopback) needs CRM_MCP_HTTP_TOKEN: clients must send it as a "
            "bearer token. Set it, or bind 127.0.0.1."
        )
    return static[0].token if static else None


def _bracketed(host: str) -> str:
    """An IPv6 literal as it appears in a Host header (`[::1]`); anything else unchanged."""
    bare = host.strip("[]")
    try:
        return f"[{bare}]" if ipaddress.ip_address(bare).version == 6 else bare
    except ValueError:
        return host.lower()


def _has_port(name: str) -> bool:
    return name.rsplit("]", 1)[-1].count(":") == 1


def allowed_host_names(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host names this server answers: loopback, the bound address (unless a wildcard such as
    0.0.0.0, which names no host), then `extra` (CRM_MCP_ALLOWED_HOSTS), without repeats."""
    names = [*LOOPBACK_NAMES]
    if bind_host.strip() not in _WILDCARDS:
        names.append(_bracketed(bind_host.strip()))
    names += [name.lower() for name in extra]
    return list(dict.fromkeys(names))


def transport_security(bind_host: str, extra: Sequence[str] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection for an HTTP bind: Host must be one of `allowed_host_names` (any
    port unless the name gives one) and Origin, when sent, an http(s) origin of one of them."""
    hosts: list[str] = []
    origins: list[str] = []
    for name in allowed_host_names(bind_host, extra):
        spellings = [name] if _has_port(name) else [name, f"{name}:*"]
        hosts += spellings
        origins += [f"{scheme}://{s}" for s in spellings for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def log_host_check(bind_host: str, extra: Sequence[str]) -> None:
    """Say at start-up which Host names are answered, so a refused proxy (421) is easy to place."""
    if is_loopback_host(bind_host) or extra:
        return
    log.warning(
        "Bound to %s: /mcp answers only Host %s; set CRM_MCP_ALLOWED_HOSTS to the name clients use "
        "(e.g. crm.example.com) or requests are refused with 421.",
        bind_host,
        ", ".join(allowed_host_names(bind_host)),
    )

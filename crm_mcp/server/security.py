"""Who may talk to the HTTP transports: the bearer-token rule and the Host/Origin check.

Two rules, one notion of "loopback" (`crm_mcp.settings.is_loopback_host`) for both:

- Token. Bound beyond loopback, `serve` needs CRM_MCP_HTTP_TOKEN and refuses to start without a
  valid one. A configured token is required on every bind, loopback included: a reverse proxy or
  tunnel on the same machine makes a loopback port reachable from anywhere, and an operator who
  set a token expects it to be asked for.
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
from typing import Literal

from mcp.server.transport_security import TransportSecuritySettings

from crm_mcp.errors import ConfigurationError
from crm_mcp.server.auth import check_http_token
from crm_mcp.settings import Settings, is_loopback_host

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def required_token(settings: Settings, transport: Literal["stdio", "sse", "http"], host: str) -> str | None:
    """The bearer token the HTTP transports must require, or None when they need none.

    Raises:
        ConfigurationError: bound beyond loopback without a token, or the token is blank or short
            (a blank one counts as unset on loopback, where none is needed).
    """
    if transport == "stdio":
        return None
    configured = settings.http_token.get_secret_value() if settings.http_token is not None else None
    if is_loopback_host(host) and not (configured or "").strip():
        return None
    if configured is None:
        raise ConfigurationError(
            f"Serving on {host} (beyond loopback) needs CRM_MCP_HTTP_TOKEN: clients must send it as a "
            "bearer token. Set it, or bind 127.0.0.1."
        )
    return check_http_token(configured)


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

"""Bearer auth for the HTTP transports: static tokens and the verifier that puts them together with
OAuth JWT access tokens (`crm_mcp.server.oauth_rs`).

Static tokens (CRM_MCP_HTTP_TOKEN, CRM_MCP_HTTP_TOKENS) are for simple deployments. Several may be
accepted at once, so a token can be rotated without downtime: add the new one, move clients,
remove the old one. Each is at least `MIN_TOKEN_LENGTH` characters (an empty or short one refuses
to start: an empty CRM_MCP_HTTP_TOKEN once started the server with no authentication at all), and
each speaks for a principal (`name`, default "default") with scopes (default crm:read crm:write).

Every verifier answers an `AccessToken` whose `client_id` is the principal's name and whose
`scopes` are its scopes; that is the contract tenant scoping and scope checks build on. The raw
token is never kept in it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from mcp.server.auth.provider import AccessToken, TokenVerifier

from crm_mcp.errors import ConfigurationError
from crm_mcp.settings import DEFAULT_HTTP_SCOPES

MIN_TOKEN_LENGTH = 32
DEFAULT_SCOPES = DEFAULT_HTTP_SCOPES
_HINT = "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


@dataclass(frozen=True)
class StaticToken:
    """A configured static token and the principal it speaks for."""

    name: str
    token: str = field(repr=False)
    scopes: tuple[str, ...] = DEFAULT_SCOPES


def check_http_token(token: str | None, *, setting: str = "CRM_MCP_HTTP_TOKEN") -> str:
    """The token, refused when missing, blank or short (one check for every caller).

    Raises:
        ConfigurationError: the token is missing, blank, or shorter than MIN_TOKEN_LENGTH.
    """
    value = (token or "").strip()
    if not value:
        raise ConfigurationError(
            f"{setting} is empty: serving HTTP needs a bearer token that clients send as "
            f"`Authorization: Bearer ...` (at least {MIN_TOKEN_LENGTH} characters, {_HINT}). Set it, "
            "or unset it and bind 127.0.0.1."
        )
    if len(value) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"{setting} is {len(value)} characters long; use at least {MIN_TOKEN_LENGTH} ({_HINT})."
        )
    return value


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class StaticTokenVerifier:
    """Accepts any of the configured tokens, each compared in constant time (all of them, always,
    so the time taken says nothing about which one, if any, came close)."""

    def __init__(self, tokens: str | Sequence[StaticToken]) -> None:
        if isinstance(tokens, str):
            tokens = [StaticToken("default", tokens)]
        if not tokens:
            raise ConfigurationError("no static token configured")
        self._tokens = [(_digest(check_http_token(t.token)), t) for t in tokens]

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = _digest(token)
        found: StaticToken | None = None
        for digest, candidate in self._tokens:
            if hmac.compare_digest(presented, digest) and found is None:
                found = candidate
        if found is None:
            return None
        return AccessToken(token="***", client_id=found.name, scopes=list(found.scopes))  # noqa: S106


class ChainedTokenVerifier:
    """Static tokens first, then OAuth access tokens: the first verifier that accepts a token wins."""

    def __init__(self, verifiers: Sequence[TokenVerifier]) -> None:
        self.verifiers = list(verifiers)

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self.verifiers:
            if (found := await verifier.verify_token(token)) is not None:
                return found
        return None

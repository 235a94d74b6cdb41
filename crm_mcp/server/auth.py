"""Bearer auth for the HTTP transports when bound beyond loopback (CRM_MCP_HTTP_TOKEN)."""

from __future__ import annotations

import hmac

from mcp.server.auth.provider import AccessToken

from crm_mcp.errors import ConfigurationError

MIN_TOKEN_LENGTH = 32


def check_http_token(token: str | None) -> str:
    """The bearer token the HTTP transports require, refused when missing, blank or short.

    One check for every caller: an empty CRM_MCP_HTTP_TOKEN once passed an `is None` test in one
    place and a truthiness test in another, and the server started with no authentication at all.

    Raises:
        ConfigurationError: the token is missing, blank, or shorter than MIN_TOKEN_LENGTH.
    """
    value = (token or "").strip()
    if not value:
        raise ConfigurationError(
            "CRM_MCP_HTTP_TOKEN is empty: serving beyond loopback needs a bearer token that clients "
            f"send as `Authorization: Bearer ...` (at least {MIN_TOKEN_LENGTH} characters, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`). Set it, or bind 127.0.0.1."
        )
    if len(value) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"CRM_MCP_HTTP_TOKEN is {len(value)} characters long; use at least {MIN_TOKEN_LENGTH} "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
        )
    return value


class StaticTokenVerifier:
    """Accepts exactly one shared token, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = check_http_token(token).encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token="***", client_id="crm-mcp-http", scopes=[])  # noqa: S106
        return None

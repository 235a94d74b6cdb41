"""Bearer auth for the HTTP transports when bound beyond loopback (CRM_MCP_HTTP_TOKEN)."""

from __future__ import annotations

import hmac

from mcp.server.auth.provider import AccessToken


class StaticTokenVerifier:
    """Accepts exactly one shared token, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token="***", client_id="crm-mcp-http", scopes=[])  # noqa: S106
        return None

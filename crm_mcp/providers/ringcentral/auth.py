"""RingCentral's token grants on the shared OAuth flow (`connectors.oauth.OAuth2RefreshAuth`).

What differs from the shared flow (crm-apis §4.1): the client authenticates to
`POST /restapi/oauth/token` with HTTP Basic (`client_id:client_secret`), not form fields; and
besides the refresh-token grant there is the JWT grant (`grant_type=urn:ietf:params:oauth:
grant-type:jwt-bearer`, `assertion=<JWT credential>`) of server-to-server apps. Everything else
is the shared flow's: the access token is reused until it is within the skew of expiry
(RingCentral: 1 hour), refreshed single-flight, and a rotated refresh token (RingCentral's are
single-use) is persisted before the new access token is used.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx2

from crm_mcp.connectors.oauth import OAuth2RefreshAuth
from crm_mcp.errors import register_secret

from .spec import JWT_GRANT


class RingCentralAuth(OAuth2RefreshAuth):
    """The refresh-token grant, or with `jwt` the JWT grant (the JWT is then the chain's seed:
    a new JWT configured by the user wins over tokens stored for the old one)."""

    def __init__(self, *, jwt: str | None = None, refresh_token: str | None = None, **kw: Any) -> None:
        self._jwt = (jwt or "").strip() or None
        super().__init__(refresh_token=self._jwt or refresh_token, **kw)
        basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
        register_secret(basic)
        self._basic = f"Basic {basic}"

    @property
    def mode(self) -> str:
        return "jwt" if self._jwt else "refresh_token"

    def _refresh_request(self) -> httpx2.Request:
        assert self._tokens is not None
        if self._jwt:
            form = {"grant_type": JWT_GRANT, "assertion": self._jwt}
        else:
            form = {"grant_type": "refresh_token", "refresh_token": self._tokens.refresh_token}
        headers = {"Accept": "application/json", "Authorization": self._basic}
        return httpx2.Request("POST", self._token_url, data=form, headers=headers)

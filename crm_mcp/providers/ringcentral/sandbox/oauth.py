"""RingCentral's token endpoint and bearer check, on the simulator's clock.

`POST /restapi/oauth/token` (form body, client authenticated with HTTP Basic) takes
`grant_type=refresh_token` (single use: the old refresh token dies, a new one is issued) and
the JWT grant (`urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion=<JWT>`), and answers
the token body of crm-apis §4.1 (`expires_in` 3600, `refresh_token_expires_in` 604800). Failed
grants answer RFC 6749 errors with RingCentral's `errorCode`. API calls with an expired token get
401 `OAU-213`, with an unknown one 401 `OAU-149`.
"""

from __future__ import annotations

import base64
import secrets
import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

from crm_mcp.providers.ringcentral.spec import JWT_GRANT

from .config import RingCentralSandboxConfig

SCOPE = "ReadAccounts ReadCallLog ReadCallRecording"


class OAuthRefused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message") or body.get("error_description"))
        self.status = status
        self.body = body


def api_error(status: int, code: str, message: str) -> OAuthRefused:
    return OAuthRefused(status, {"errorCode": code, "message": message,
                                 "errors": [{"errorCode": code, "message": message}]})  # fmt: skip


def _grant_error(status: int, error: str, code: str, description: str) -> OAuthRefused:
    return OAuthRefused(status, {"error": error, "errorCode": code, "error_description": description,
                                 "errors": [{"errorCode": code, "message": description}]})  # fmt: skip


class SandboxOAuth:
    def __init__(self, config: RingCentralSandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        self.grants: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._access.clear()
            self._refresh = {self.config.refresh_token: float("inf")}
            self.grants.clear()

    def expire_access_tokens(self) -> None:
        with self._lock:
            now = self.config.clock()
            self._access = {t: min(exp, now) for t, exp in self._access.items()}

    def revoke(self) -> None:
        with self._lock:
            self._access.clear()
            self._refresh.clear()

    def authenticate(self, authorization: str) -> None:
        """Raises: OAuthRefused 401 for a missing, unknown or expired token."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise api_error(401, "CMN-405", "Login required")
        with self._lock:
            expires = self._access.get(token.strip())
        if expires is None:
            raise api_error(401, "OAU-149", "Invalid access token")
        if self.config.clock() >= expires:
            raise api_error(401, "OAU-213", "Token expired")

    def grant(self, authorization: str, body: bytes) -> dict[str, Any]:
        """Raises: OAuthRefused for bad client credentials or a refused grant."""
        cfg = self.config
        expected = base64.b64encode(f"{cfg.client_id}:{cfg.client_secret}".encode()).decode()
        if authorization.strip() != f"Basic {expected}":
            self.grants["refused"] += 1
            raise _grant_error(401, "invalid_client", "OAU-123", "Invalid client credentials")
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type", "")
        now = cfg.clock()
        with self._lock:
            if grant == "refresh_token":
                token = form.get("refresh_token", "")
                if self._refresh.get(token, 0.0) <= now:
                    self.grants["refused"] += 1
                    raise _grant_error(400, "invalid_grant", "OAU-211", "Token is revoked")
                del self._refresh[token]  # single use
            elif grant == JWT_GRANT:
                if form.get("assertion") != cfg.jwt:
                    self.grants["refused"] += 1
                    raise _grant_error(400, "invalid_grant", "OAU-251", "Invalid assertion signature")
            else:
                self.grants["refused"] += 1
                raise _grant_error(
                    400, "unsupported_grant_type", "OAU-250", f"Unsupported grant type {grant!r}"
                )
            self.grants["jwt" if grant == JWT_GRANT else grant] += 1
            access = "U1BCMDFUMDRKV1MwMXx" + secrets.token_urlsafe(32)
            refresh = "U0pDMDFQMDFQQVMwMHx" + secrets.token_urlsafe(24)
            self._access[access] = now + cfg.access_token_ttl_s
            self._refresh[refresh] = now + cfg.refresh_token_ttl_s
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": cfg.access_token_ttl_s,
            "refresh_token": refresh,
            "refresh_token_expires_in": cfg.refresh_token_ttl_s,
            "scope": SCOPE,
            "owner_id": "62264425008",
            "endpoint_id": "sbx-endpoint",
        }

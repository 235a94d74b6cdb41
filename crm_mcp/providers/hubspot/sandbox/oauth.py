"""HubSpot's OAuth 2.0 token endpoint and bearer-token check, on the simulator's clock.

``POST /oauth/v1/token`` takes a form body (``oauth.json``: ``grant_type``, ``client_id``,
``client_secret``, ``refresh_token``, ``code``, ``redirect_uri``) and answers the snake_case
``TokenResponseIF``. Access tokens live ``access_token_ttl_s`` (HubSpot: 30 minutes) and really
expire; HubSpot refresh tokens do not rotate, so a refresh answers the same one. A call with an
expired token gets 401 EXPIRED_AUTHENTICATION, an unknown one 401 INVALID_AUTHENTICATION. Failed
grants answer 400 with HubSpot's older ``{"status": "BAD_REFRESH_TOKEN", ...}`` shape. ``grants``
counts every grant so a test can check that 50 concurrent callers caused one refresh.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_mcp.providers.hubspot.sandbox.config import HubSpotSandboxConfig
from crm_mcp.providers.hubspot.sandbox.errors import ApiError, error_body

SCOPES = ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write", "crm.schemas.contacts.read"]
_NO_CREDENTIALS = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


@dataclass(frozen=True)
class Caller:
    """Who made an API call: the kind of credential decides limits and headers."""

    kind: Literal["private_app", "oauth"]

    @property
    def app_key(self) -> str:
        """Burst limits are per app per account; the private app and the OAuth app are two apps."""
        return self.kind


def _unauthorized(message: str, category: str) -> ApiError:
    return ApiError(401, message, category)


class HubSpotOAuth:
    """Token issuance and validation for one app installed on one portal."""

    def __init__(self, config: HubSpotSandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}  # access token -> expires at (config.clock)
        self._refresh: set[str] = {config.refresh_token}
        self._codes: set[str] = set()
        self.grants: Counter[str] = Counter()

    # -- simulator controls -------------------------------------------------------------------
    def authorization_code(self) -> str:
        """A one-time code as HubSpot's redirect would hand it to the app."""
        with self._lock:
            code = secrets.token_hex(16)
            self._codes.add(code)
            return code

    def expire_access_tokens(self) -> None:
        """Every issued access token expires now (the client's own expiry clock does not know)."""
        with self._lock:
            now = self.config.clock()
            self._access = {t: min(exp, now) for t, exp in self._access.items()}

    def revoke(self) -> None:
        """The app was uninstalled: refresh tokens die and issued access tokens stop working."""
        with self._lock:
            self._refresh.clear()
            self._access.clear()

    def reset(self) -> None:
        with self._lock:
            self._access.clear()
            self._refresh = {self.config.refresh_token}
            self._codes.clear()
            self.grants.clear()

    # -- the check every API call goes through --------------------------------------------------
    def authenticate(self, authorization: str) -> Caller:
        """The caller behind an ``Authorization`` header.

        Raises:
            ApiError: 401 INVALID_AUTHENTICATION (missing/unknown) or EXPIRED_AUTHENTICATION.
        """
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(_NO_CREDENTIALS, "INVALID_AUTHENTICATION")
        token = token.strip()
        if token == self.config.token:
            return Caller("private_app")
        with self._lock:
            expires = self._access.get(token)
        if expires is None:
            raise _unauthorized(
                "The OAuth token used to make this call is not valid.", "INVALID_AUTHENTICATION"
            )
        late = self.config.clock() - expires
        if late >= 0:
            minutes = int(late // 60)
            msg = f"The OAuth token used to make this call expired {minutes} minute(s) ago."
            raise _unauthorized(msg, "EXPIRED_AUTHENTICATION")
        return Caller("oauth")

    # -- HTTP -----------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            Route("/oauth/v1/token", self._token, methods=["POST"]),
            Route("/oauth/v1/access-tokens/{token}", self._introspect, methods=["GET"]),
        ]

    def _refused(self, request: Request, status: str, message: str, grant: str) -> Response:
        self.grants[f"{grant or 'unknown'}:refused"] += 1
        body = {"status": status, "message": message, "correlationId": request.state.correlation_id}
        return JSONResponse(body, status_code=400)

    async def _token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        form.update({k: v for k, v in request.query_params.items() if k not in form})  # the spec allows both
        grant = form.get("grant_type", "")
        cfg = self.config
        if form.get("client_id") != cfg.client_id:
            return self._refused(request, "BAD_CLIENT_ID", "missing or unknown client id", grant)
        if form.get("client_secret") != cfg.client_secret:
            return self._refused(request, "BAD_CLIENT_SECRET", "missing or invalid client secret", grant)
        with self._lock:
            if grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                if refresh not in self._refresh:
                    return self._refused(
                        request, "BAD_REFRESH_TOKEN", "missing or invalid refresh token", grant
                    )
            elif grant == "authorization_code":
                if form.get("code", "") not in self._codes:
                    return self._refused(request, "BAD_AUTH_CODE", "missing or unknown auth code", grant)
                self._codes.discard(form["code"])
                refresh = secrets.token_hex(8) + "-" + secrets.token_hex(4) + "-sbx"
                self._refresh.add(refresh)
            else:
                return self._refused(request, "BAD_GRANT_TYPE", f"unsupported grant_type {grant!r}", grant)
            self.grants[grant] += 1
            access = "CJ" + secrets.token_urlsafe(48)
            self._access[access] = cfg.clock() + cfg.access_token_ttl_s
        return JSONResponse(self._token_body(access, refresh))

    def _token_body(self, access: str, refresh: str) -> dict[str, Any]:
        return {
            "token_type": "bearer",
            "refresh_token": refresh,
            "access_token": access,
            "expires_in": self.config.access_token_ttl_s,
            "token_use": "access_token",
            "hub_id": self.config.portal_id,
            "user_id": 1,
            "scopes": list(SCOPES),
        }

    async def _introspect(self, request: Request) -> Response:
        token = request.path_params["token"]
        with self._lock:
            expires = self._access.get(token)
        remaining = int(expires - self.config.clock()) if expires is not None else -1
        if remaining <= 0:
            body = error_body("Token not found", "OBJECT_NOT_FOUND", request.state.correlation_id)
            return JSONResponse(body, status_code=404)
        return JSONResponse(
            {
                "token": token,
                "user": "sandbox@example.com",
                "hub_domain": f"sandbox-{self.config.portal_id}.hubspot.com",
                "scopes": list(SCOPES),
                "hub_id": self.config.portal_id,
                "app_id": self.config.app_id,
                "expires_in": remaining,
                "user_id": 1,
                "token_type": "access",
            }
        )

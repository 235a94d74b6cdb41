"""GoHighLevel's OAuth token endpoint, simulated: ``POST /oauth/token`` (crm-apis.md §1.2).

What a connector has to get right, reproduced here: the body is form-encoded (JSON is refused), no
``Version`` header is needed, client id and secret are checked on every call, access tokens live
86 399 s on the simulator's clock, and every ``refresh_token`` grant *rotates* the refresh token —
the old one stops working at once, so a client that loses the new one is locked out until the user
reconnects. ``revoke()`` plays the user uninstalling the app: every token of the install dies.

Issued access tokens are accepted by the API pipeline next to the static ``SANDBOX_TOKEN``.
Tests drive the clock with ``advance()`` and read ``grants`` to count refreshes.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SANDBOX_CLIENT_ID = "sbx-client-0000000001"
SANDBOX_CLIENT_SECRET = "sbx-client-secret-not-real"  # noqa: S105 - a published test credential
ACCESS_TTL_S = 86_399
SCOPE = "contacts.readonly contacts.write calendars.readonly calendars/events.write locations.readonly"


def _error(status: int, message: str, error: str) -> JSONResponse:
    # NestJS shape (what GHL's spec documents) plus the RFC 6749 `error` code a client keys on.
    return JSONResponse({"statusCode": status, "message": message, "error": error}, status_code=status)


class GHLOAuth:
    """Token issuance and validation for one simulated Marketplace app installed on one location."""

    def __init__(
        self,
        *,
        location_id: str,
        clock: Callable[[], float] = time.monotonic,
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: str = SANDBOX_CLIENT_SECRET,
        access_ttl_s: int = ACCESS_TTL_S,
        token_prefix: str = "sbx",  # noqa: S107 - a label, not a secret
    ) -> None:
        self.location_id = location_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_ttl_s = access_ttl_s
        self.token_prefix = token_prefix
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}  # access token -> expires at (simulator clock)
        self._refresh: set[str] = set()
        self._codes: set[str] = set()
        self._seq = itertools.count(1)
        self.grants: Counter[str] = Counter()  # "refresh_token", "refresh_token:refused", ...

    # -- simulator controls -------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the token clock forward (access tokens expire by it; nothing else does)."""
        with self._lock:
            self._offset += seconds

    def install(self) -> str:
        """A refresh token as the authorization-code exchange of a fresh install would return it."""
        with self._lock:
            token = self._mint("rt")
            self._refresh.add(token)
            return token

    def authorization_code(self) -> str:
        with self._lock:
            code = self._mint("code")
            self._codes.add(code)
            return code

    def revoke(self) -> None:
        """The user uninstalled the app (or an admin revoked it): every token stops working."""
        with self._lock:
            self._access.clear()
            self._refresh.clear()
            self._codes.clear()

    def expire_access_tokens(self) -> None:
        """Invalidate issued access tokens server-side (the client's expiry clock does not know)."""
        with self._lock:
            self._access.clear()

    def valid_refresh_tokens(self) -> int:
        with self._lock:
            return len(self._refresh)

    def accepts(self, authorization: str) -> bool:
        """True for ``Bearer <an issued, unexpired access token>``."""
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            return False
        with self._lock:
            expires = self._access.get(token)
            if expires is None:
                return False
            if self.now() >= expires:
                del self._access[token]
                return False
            return True

    # -- HTTP -----------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/_sandbox/oauth", self._control, methods=["GET", "POST"]),
        ]

    def _mint(self, kind: str) -> str:
        return f"{self.token_prefix}-{kind}-{next(self._seq)}-{secrets.token_hex(12)}"

    async def _token(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return _error(
                422, "Content-Type must be application/x-www-form-urlencoded", "Unprocessable Entity"
            )
        raw = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        form = {k: v[-1] for k, v in raw.items()}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            self.grants["invalid_client"] += 1
            return _error(401, "Invalid client credentials", "invalid_client")
        grant = form.get("grant_type", "")
        with self._lock:
            if grant == "refresh_token":
                presented = form.get("refresh_token", "")
                if presented not in self._refresh:
                    self.grants["refresh_token:refused"] += 1
                    return _error(401, "Invalid grant: refresh token is invalid", "invalid_grant")
                self._refresh.discard(presented)  # rotation: the old refresh token dies now
            elif grant == "authorization_code":
                code = form.get("code", "")
                if code not in self._codes:
                    self.grants["authorization_code:refused"] += 1
                    return _error(401, "Invalid grant: authorization code is invalid", "invalid_grant")
                self._codes.discard(code)
            elif grant == "client_credentials":
                self.grants["client_credentials:refused"] += 1
                return _error(
                    400, "client_credentials is not available for Location tokens", "unsupported_grant_type"
                )
            else:
                return _error(
                    422,
                    f"grant_type must be one of authorization_code, refresh_token; got {grant!r}",
                    "Unprocessable Entity",
                )
            self.grants[grant] += 1
            access, refresh = self._mint("at"), self._mint("rt")
            self._access[access] = self.now() + self.access_ttl_s
            self._refresh.add(refresh)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl_s,
            "refresh_token": refresh,
            "scope": SCOPE,
            "userType": form.get("user_type") or "Location",
            "locationId": self.location_id,
            "companyId": "SbxCompany0000000001",
            "approvedLocations": [self.location_id],
            "userId": "SbxUsr00000000000001",
            "planId": "SbxPlan0000000000001",
            "isBulkInstallation": False,
        }
        return Response(json.dumps(body), status_code=200, media_type="application/json")

    async def _control(self, request: Request) -> Response:
        """``GET`` counters; ``POST {"action": "install" | "revoke" | "expire" | "advance", "seconds"}``."""
        if request.method == "POST":
            try:
                cmd = await request.json()
                action = cmd["action"]
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": f"bad command: {exc}"}, status_code=400)
            if action == "install":
                return JSONResponse({"refresh_token": self.install()})
            if action == "revoke":
                self.revoke()
            elif action == "expire":
                self.expire_access_tokens()
            elif action == "advance":
                self.advance(float(cmd.get("seconds", 0)))
            else:
                return JSONResponse({"error": f"unknown action {action!r}"}, status_code=400)
        return JSONResponse(
            {"grants": dict(self.grants), "valid_refresh_tokens": self.valid_refresh_tokens()}
        )

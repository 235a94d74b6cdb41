"""The data centres' accounts servers: `POST /<accounts host>/oauth/v2/token` (refresh grant,
form or query parameters), one-hour access tokens bound to the data centre that issued them,
and Zoho's limit of 10 access tokens per refresh token in 10 minutes.

Zoho's token endpoint answers a refused grant with HTTP 200 `{"error": "invalid_code"}` and the
refresh limit with 400 `{"error": "Access Denied", ...}`; both are reproduced.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from crm_mcp.providers.zoho.settings import DATA_CENTRES

ACCOUNTS_HOSTS = {acc.split("://", 1)[1]: dc for dc, (acc, _) in DATA_CENTRES.items()}
API_HOSTS = {api.split("://", 1)[1]: dc for dc, (_, api) in DATA_CENTRES.items()}


class ZohoAccounts:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        data_centre: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        static_token: str,
        ttl_s: int = 3600,
        refresh_limit: int = 10,
        refresh_window_s: float = 600.0,
    ) -> None:
        self.clock, self.data_centre = clock, data_centre
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.static_token, self.ttl_s = static_token, ttl_s
        self.refresh_limit, self.refresh_window_s = refresh_limit, refresh_window_s
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}
        self._recent: deque[float] = deque()
        self.grants: Counter[str] = Counter()

    def reset(self) -> None:
        with self._lock:
            self._access.clear()
            self._recent.clear()
            self.grants.clear()

    def expire_access_tokens(self) -> None:
        with self._lock:
            now = self.clock()
            self._access = {t: min(exp, now) for t, exp in self._access.items()}

    def valid(self, token: str) -> str | None:
        """None when the token works in this org's data centre, else Zoho's error code."""
        if token == self.static_token:
            return None
        with self._lock:
            expires = self._access.get(token)
        if expires is None or self.clock() >= expires:
            return "INVALID_TOKEN"
        return None

    async def token(self, request: Request) -> Response:
        form = dict(request.query_params)
        form.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        grant = str(form.get("grant_type") or "")
        dc = ACCOUNTS_HOSTS.get(request.path_params["host"])
        if grant != "refresh_token":
            self.grants["refused"] += 1
            return JSONResponse({"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            self.grants["refused"] += 1
            return JSONResponse({"error": "invalid_client"})
        if dc != self.data_centre or form.get("refresh_token") != self.refresh_token:
            # a refresh token lives in its own data centre: another DC's accounts server knows it not
            self.grants["refused"] += 1
            return JSONResponse({"error": "invalid_code"})
        with self._lock:
            now = self.clock()
            while self._recent and self._recent[0] <= now - self.refresh_window_s:
                self._recent.popleft()
            if len(self._recent) >= self.refresh_limit:
                self.grants["denied"] += 1
                body = {
                    "error_description": "You have made too many requests continuously. "
                    "Please try again after some time.",
                    "error": "Access Denied",
                    "status": "failure",
                }
                return JSONResponse(body, status_code=400)
            self._recent.append(now)
            self.grants["refresh_token"] += 1
            access = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
            self._access[access] = now + self.ttl_s
        api_host = DATA_CENTRES[self.data_centre][1].split("://", 1)[1]
        base = f"{request.url.scheme}://{request.url.netloc}/{api_host}"
        return JSONResponse(
            {
                "access_token": access,
                "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.ALL",
                "api_domain": base,
                "token_type": "Bearer",
                "expires_in": self.ttl_s,
            }
        )

"""Zoho's OAuth flavour of the shared `OAuth2RefreshAuth`: the `Zoho-oauthtoken` header, Zoho's
limit on refreshes, and its token endpoint's habit of answering errors with HTTP 200.

- The header is `Authorization: Zoho-oauthtoken <token>`, not Bearer (the token response still
  says `token_type: Bearer`).
- An access token lives one hour and is reused until then (the shared flow refreshes only when
  it is missing, about to expire, or refused with 401): never per request.
- Zoho issues at most 10 access tokens per refresh token in 10 minutes and then blocks the
  refresh token for the rest of the window. `RefreshBudget` counts the grants we asked for and
  refuses an 11th with a RateLimitedError (retry_after = when the oldest leaves the window)
  instead of sending it and getting the refresh token blocked; the shared flow's single flight
  makes N concurrent callers cost one grant.
- A refused grant comes back as 200 `{"error": "invalid_code"}`, and the refresh limit as
  400 `{"error": "Access Denied", "error_description": "You have made too many requests ..."}`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx2

from crm_mcp.connectors.oauth import OAuth2RefreshAuth
from crm_mcp.errors import AuthError, RateLimitedError

from .spec import REFRESH_LIMIT, REFRESH_WINDOW_S

SCHEME = "Zoho-oauthtoken"


class RefreshBudget:
    """Refresh grants in a rolling window, on an injected clock."""

    def __init__(
        self,
        limit: int = REFRESH_LIMIT,
        window_s: float = REFRESH_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._grants: deque[float] = deque()

    def used(self) -> int:
        now = self._clock()
        while self._grants and self._grants[0] <= now - self.window_s:
            self._grants.popleft()
        return len(self._grants)

    def take(self, provider: str, connection: str) -> None:
        """Count one grant, or refuse it.

        Raises:
            RateLimitedError: `limit` grants were already asked for in the window.
        """
        if self.used() >= self.limit:
            wait = self._grants[0] + self.window_s - self._clock()
            raise RateLimitedError(
                f"{provider} connection {connection!r}: {self.limit} access tokens were already "
                f"requested in {int(self.window_s // 60)} minutes (Zoho's limit per refresh token); "
                f"the next refresh is allowed in {max(1, int(wait))} s",
                provider=provider,
                retry_after=max(1.0, wait),
            )
        self._grants.append(self._clock())


class ZohoOAuth(OAuth2RefreshAuth):
    """`OAuth2RefreshAuth` with Zoho's header, refresh budget and error answers."""

    def __init__(self, *, budget: RefreshBudget | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budget = budget or RefreshBudget()

    def _sign(self, request: httpx2.Request) -> int:
        assert self._tokens is not None and self._tokens.access_token
        request.headers["Authorization"] = f"{SCHEME} {self._tokens.access_token}"
        return self.generation

    def _refresh_request(self) -> httpx2.Request:
        self.budget.take(self.provider, self.connection)
        return super()._refresh_request()

    async def _accept(self, reply: httpx2.Response) -> None:
        await reply.aread()
        try:
            body = reply.json() if reply.content else {}
        except ValueError:
            body = {}
        error = str(body.get("error") or "") if isinstance(body, dict) else ""
        if error == "Access Denied":
            raise RateLimitedError(
                f"{self.provider} connection {self.connection!r}: Zoho refused the token refresh "
                "(too many refreshes in 10 minutes); retrying later",
                provider=self.provider,
                status=reply.status_code,
                retry_after=REFRESH_WINDOW_S,
            )
        if error and reply.status_code < 400:
            raise AuthError(
                f"{self.provider} connection {self.connection!r}: the refresh token was refused "
                f"[{error}]. {self._reconnect}",
                provider=self.provider,
                status=401,
                hint=self._reconnect,
            )
        await super()._accept(reply)

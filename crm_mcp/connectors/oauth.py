"""OAuth 2 access tokens that refresh themselves, as an `httpx2.Auth` flow.

Why a flow and not a wrapper around requests: httpx drives the flow for every request, so the
token is attached in exactly one place, and the refresh request is *yielded* through the same
client (same transport, timeouts and TLS settings) — no second HTTP client exists (DESIGN §1).

Rules the flow keeps:
- Refresh before use when the access token is missing or within `skew_s` of expiry, and once more
  if the provider answers 401 anyway (revoked server-side, clock skew).
- Single flight: N concurrent requests that all find the token stale (or all get 401) cause one
  refresh. They queue on an `asyncio.Lock`; whoever gets it after the first sees the token
  *generation* moved on and just re-signs its request.
- Rotation: providers such as GoHighLevel return a new refresh token on every refresh and kill the
  old one. The new pair is handed to the `TokenStore` (encrypted at rest by the state layer)
  *before* the new access token is used; if that write fails the pair is kept in memory, marked
  unsaved, and no request goes out until a later save succeeds — a restart can then never find
  only a dead refresh token on disk.
- A refused refresh (`invalid_grant`, revoked install, wrong client secret) is an `AuthError` that
  says what the user must do; a 5xx or timeout at the token endpoint is retryable.
- Every token seen is registered with `crm_mcp.errors.register_secret`, so it is redacted from
  logs, errors and tool output wherever it might surface.

`TokenStore` is defined with plain types so `crm_mcp.state.credentials` satisfies it structurally
(connectors never import state).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2

from crm_mcp.errors import AuthError, ConfigurationError, UpstreamUnavailableError, redact, register_secret

logger = logging.getLogger(__name__)


class TokenStore(Protocol):
    """Durable home of a connection's tokens (a dict of plain values; encrypted by the store)."""

    async def load_tokens(self, provider: str, connection: str) -> dict[str, Any] | None: ...
    async def save_tokens(self, provider: str, connection: str, tokens: dict[str, Any]) -> None: ...


class MemoryTokenStore:
    """A process-local store: for tests and for static setups that accept re-seeding on restart."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], dict[str, Any]] = {}
        self.saves = 0

    async def load_tokens(self, provider: str, connection: str) -> dict[str, Any] | None:
        tokens = self.saved.get((provider, connection))
        return dict(tokens) if tokens else None

    async def save_tokens(self, provider: str, connection: str, tokens: dict[str, Any]) -> None:
        self.saves += 1
        self.saved[(provider, connection)] = dict(tokens)


@dataclass(frozen=True)
class TokenSet:
    access_token: str | None
    refresh_token: str
    expires_at: float  # epoch seconds on the auth's wall clock; 0 = unknown / expired
    seed: str  # fingerprint of the configured refresh token this chain started from

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        return cls(
            access_token=data.get("access_token") or None,
            refresh_token=str(data["refresh_token"]),
            expires_at=float(data.get("expires_at") or 0.0),
            seed=str(data.get("seed") or ""),
        )


def fingerprint(value: str) -> str:
    """A stable, non-reversible id of a secret (to notice a re-configured refresh token)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


class OAuth2RefreshAuth(httpx2.Auth):
    def __init__(
        self,
        *,
        provider: str,
        connection: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str | None,
        store: TokenStore | None = None,
        clock: Callable[[], float] = time.time,
        skew_s: float = 300.0,
        extra_params: Mapping[str, str] | None = None,
        reconnect_hint: str = "",
    ) -> None:
        if not client_id or not client_secret:
            raise ConfigurationError(
                f"{provider} connection {connection!r}: OAuth needs client_id and client_secret"
            )
        self.provider = provider
        self.connection = connection
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._seed_token = (refresh_token or "").strip() or None
        self._store: TokenStore = store or MemoryTokenStore()
        self._clock = clock
        self._skew = skew_s
        self._extra = dict(extra_params or {})
        self._reconnect = reconnect_hint or (
            f"Reconnect the {provider} app for connection {connection!r} and configure the new refresh token."
        )
        self._lock = asyncio.Lock()
        self._tokens: TokenSet | None = None
        self._loaded = False
        self._unsaved = False
        self.generation = 0
        self.refreshes = 0
        for secret in (client_secret, self._seed_token):
            register_secret(secret)

    @property
    def secrets(self) -> tuple[str, ...]:
        values = [self._client_secret, self._seed_token]
        if self._tokens is not None:
            values += [self._tokens.access_token, self._tokens.refresh_token]
        return tuple(v for v in values if v)

    def __repr__(self) -> str:
        return f"OAuth2RefreshAuth(provider={self.provider!r}, connection={self.connection!r}, tokens='***')"

    # -- the flow ---------------------------------------------------------------------------
    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if not self._usable():
            async with self._lock:
                await self._load()
                await self._save_pending()
                if not self._usable():
                    reply = yield self._refresh_request()
                    await self._accept(reply)
        used = self._sign(request)
        response = yield request
        if response.status_code != 401:
            return
        async with self._lock:
            if self.generation == used:  # nobody refreshed since we signed: we do it
                reply = yield self._refresh_request()
                await self._accept(reply)
        self._sign(request)
        yield request  # a second 401 goes back to the caller, who maps it to AuthError

    def sync_auth_flow(self, request: httpx2.Request) -> Any:
        raise RuntimeError("OAuth2RefreshAuth only works with an async client")

    # -- state ------------------------------------------------------------------------------
    def _usable(self) -> bool:
        t = self._tokens
        return (
            self._loaded
            and not self._unsaved
            and t is not None
            and t.access_token is not None
            and self._clock() < t.expires_at - self._skew
        )

    async def _load(self) -> None:
        if self._loaded:
            return
        stored = await self._store.load_tokens(self.provider, self.connection)
        seed = fingerprint(self._seed_token) if self._seed_token else ""
        tokens: TokenSet | None = None
        if stored and stored.get("refresh_token"):
            tokens = TokenSet.from_dict(stored)
            if seed and tokens.seed != seed:
                tokens = None  # the user configured a new refresh token (reconnected): it wins
        if tokens is None and self._seed_token:
            tokens = TokenSet(None, self._seed_token, 0.0, seed)
        if tokens is None:
            raise AuthError(
                f"{self.provider} connection {self.connection!r} has no OAuth refresh token. "
                f"{self._reconnect}",
                provider=self.provider,
            )
        for secret in (tokens.access_token, tokens.refresh_token):
            register_secret(secret)
        self._tokens = tokens
        self._loaded = True

    async def _save_pending(self) -> None:
        if self._unsaved and self._tokens is not None:
            await self._persist(self._tokens)

    async def _persist(self, tokens: TokenSet) -> None:
        try:
            await self._store.save_tokens(self.provider, self.connection, tokens.as_dict())
        except Exception as exc:
            self._unsaved = True
            logger.error(
                "%s:%s could not persist rotated OAuth tokens (%s); requests wait until it succeeds",
                self.provider,
                self.connection,
                type(exc).__name__,
            )
            raise UpstreamUnavailableError(
                f"{self.provider} connection {self.connection!r}: rotated credentials could not be saved "
                f"({type(exc).__name__}); retrying",
                provider=self.provider,
            ) from None
        self._unsaved = False

    def _sign(self, request: httpx2.Request) -> int:
        assert self._tokens is not None and self._tokens.access_token
        request.headers["Authorization"] = f"Bearer {self._tokens.access_token}"
        return self.generation

    # -- refresh ----------------------------------------------------------------------------
    def _refresh_request(self) -> httpx2.Request:
        assert self._tokens is not None
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "grant_type": "refresh_token",
            "refresh_token": self._tokens.refresh_token,
            **self._extra,
        }
        return httpx2.Request("POST", self._token_url, data=form, headers={"Accept": "application/json"})

    async def _accept(self, reply: httpx2.Response) -> None:
        """Turn the token endpoint's answer into a persisted TokenSet, or a typed error."""
        assert self._tokens is not None
        await reply.aread()
        status = reply.status_code
        try:
            body = reply.json() if reply.content else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if status >= 500 or status in (408, 429):
            raise UpstreamUnavailableError(
                f"{self.provider} token refresh failed with {status}; retrying later",
                provider=self.provider,
                status=status,
            )
        if status >= 400:
            code = str(body.get("error") or "")
            detail = body.get("error_description") or body.get("message") or reply.reason_phrase
            what = (
                "the client id/secret were refused"
                if code == "invalid_client"
                else ("the refresh token was refused (revoked, expired or already used)")
            )
            raise AuthError(
                redact(
                    f"{self.provider} connection {self.connection!r}: {what} [{status} {code}: {detail}]. "
                    f"{self._reconnect}"
                ),
                provider=self.provider,
                status=status,
                hint=self._reconnect,
            )
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise UpstreamUnavailableError(
                f"{self.provider} token endpoint answered {status} without an access token",
                provider=self.provider,
                status=status,
            )
        refresh = body.get("refresh_token") or self._tokens.refresh_token  # non-rotating providers
        register_secret(access)
        register_secret(str(refresh))
        try:
            ttl = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            ttl = 3600.0
        tokens = TokenSet(access, str(refresh), self._clock() + ttl, self._tokens.seed)
        self._tokens = tokens  # in memory first: the old refresh token is already dead upstream
        self.generation += 1
        self.refreshes += 1
        await self._persist(tokens)  # ... but not used before it is durable
        logger.info(
            "%s:%s OAuth access token refreshed (generation %d, valid %ds)",
            self.provider,
            self.connection,
            self.generation,
            int(ttl),
        )

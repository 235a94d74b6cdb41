"""Request authentication as `httpx2.Auth` flows (httpx's own extension point for credentials).

Credentials live in the auth object, never in headers passed around by connectors, so the token
has exactly one place it is attached to a request and one place it is registered for redaction.
An `OAuth2RefreshAuth` (refresh on 401, rotate and persist) will implement `RefreshableAuth`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Protocol, runtime_checkable

import httpx2

from crm_mcp.errors import ConfigurationError, register_secret


@runtime_checkable
class RefreshableAuth(Protocol):
    """An auth that can obtain a new access token when the provider answers 401."""

    async def refresh(self) -> None: ...


class StaticTokenAuth(httpx2.Auth):
    """A long-lived token (GHL Private Integration token, HubSpot private app token, ...)."""

    def __init__(self, token: str, scheme: str = "Bearer") -> None:
        if not token or not token.strip():
            raise ConfigurationError("an API token is required but empty")
        self._token = token.strip()
        self._scheme = scheme
        register_secret(self._token)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        value = f"{self._scheme} {self._token}" if self._scheme else self._token
        request.headers["Authorization"] = value
        yield request

    def __repr__(self) -> str:
        return f"StaticTokenAuth(scheme={self._scheme!r}, token='***')"

"""OAuth 2.1 resource server: JWT access tokens from an external authorization server, and the
RFC 9728 protected-resource metadata that sends clients to it (docs/oauth.md).

crm-mcp is never an authorization server itself. With CRM_MCP_OAUTH_ISSUER set (Keycloak, Auth0,
Entra ID, any OIDC provider):

- `/.well-known/oauth-protected-resource/mcp` names the public /mcp URL as `resource`, the issuer
  as the only authorization server, and the scopes (crm:read, crm:write); a 401 on /mcp answers
  `WWW-Authenticate: Bearer ..., resource_metadata="<that URL>"`, so a client can discover it all.
- A bearer token is a JWT signed by one of the issuer's keys: the JWKS named by the issuer's
  metadata (`/.well-known/oauth-authorization-server` or `openid-configuration`, `jwks_uri`),
  cached, and fetched again when a token names a key id (`kid`) not in it (at most once per
  `UNKNOWN_KID_REFETCH_S`, so unknown key ids cannot make this server hammer the issuer).
- Checked: the algorithm (allow-list; never `none`, never HS* with a public key), the signature,
  `iss` (exactly the issuer), `aud` (this server's resource URL, or CRM_MCP_OAUTH_AUDIENCE), `exp`
  and `nbf`/`iat` (with a small leeway for clock skew), and a `sub`.
- The principal is `sub` (`AccessToken.client_id`); its scopes come from `scope` (a
  space-separated string) or `scp` (a list or a string), as `AccessToken.scopes`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from mcp.server.auth.provider import AccessToken
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from crm_mcp.scope import ALL_SCOPES

log = logging.getLogger(__name__)

SCOPES_SUPPORTED = sorted(ALL_SCOPES)
UNKNOWN_KID_REFETCH_S = 30.0  # at most one refetch for unknown key ids per this many seconds
JWKS_MAX_AGE_S = 3600.0  # keys are fetched again after this long, whatever the tokens say
PRM_PATH = "/.well-known/oauth-protected-resource"

Fetch = Callable[[str], Awaitable[Any]]


@dataclass(frozen=True)
class OAuthConfig:
    """What a JWT access token is checked against."""

    issuer: str
    audience: str
    resource_url: str  # the public /mcp URL, named in the protected-resource metadata
    jwks_url: str | None = None  # None: discovered from the issuer's metadata
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_s: float = 30.0


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be, in the order MCP clients try them: RFC 8414's well-known
    URI (inserted before the issuer's path), then OpenID Connect's (inserted, then appended)."""
    parts = urlsplit(issuer)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return [f"{base}/.well-known/oauth-authorization-server", f"{base}/.well-known/openid-configuration"]
    return [
        f"{base}/.well-known/oauth-authorization-server{path}",
        f"{base}/.well-known/openid-configuration{path}",
        f"{base}{path}/.well-known/openid-configuration",
    ]


class JwksCache:
    """The issuer's signing keys by key id: loaded on first use, fetched again when older than
    JWKS_MAX_AGE_S, or when a token names an unknown key id (rate-limited)."""

    def __init__(
        self,
        config: OAuthConfig,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._fetch = fetch or _default_fetch
        self._clock = clock
        self._jwks_url = config.jwks_url
        self._keys: dict[str | None, _Key] = {}
        self._loaded_at: float | None = None
        self._last_unknown_refetch: float | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None, alg: str) -> Any:
        """The key a token with this `kid` and `alg` must be verified with, or None."""
        now = self._clock()
        stale = self._loaded_at is None or now - self._loaded_at > JWKS_MAX_AGE_S
        # a failed load is retried at most once per interval: tokens sent while the issuer is
        # down must not each cost a fetch
        fetched = stale and (self._failed_at is None or now - self._failed_at >= UNKNOWN_KID_REFETCH_S)
        if fetched:
            await self._refresh(self._loaded_at)
        found = self._pick(kid, alg)
        if (
            found is None
            and not fetched
            and self._loaded_at is not None
            and self._may_refetch_for_unknown(now)
        ):
            self._last_unknown_refetch = now
            log.info("OAuth: a token names key id %r, not in the issuer's JWKS; fetching it again", kid)
            await self._refresh(self._loaded_at)
            found = self._pick(kid, alg)
        return found

    async def warm_up(self) -> None:
        """Load the keys now (at start), logging what was found or why not."""
        await self._refresh(None)
        if self._loaded_at is not None:
            log.info(
                "OAuth: %d signing key(s) from %s (issuer %s)",
                len(self._keys),
                self._jwks_url,
                self.config.issuer,
            )

    def _may_refetch_for_unknown(self, now: float) -> bool:
        last = self._last_unknown_refetch
        return last is None or now - last >= UNKNOWN_KID_REFETCH_S

    def _pick(self, kid: str | None, alg: str) -> Any:
        if kid is not None:
            key = self._keys.get(kid)
        else:  # no kid: only unambiguous when the issuer publishes one key
            key = next(iter(self._keys.values())) if len(self._keys) == 1 else None
        if key is None or (key.alg is not None and key.alg != alg):  # a JWK's own `alg` binds it
            return None
        return key.public_key

    async def _refresh(self, seen: float | None) -> None:
        async with self._lock:
            if self._loaded_at != seen:  # another request refreshed while this one waited
                return
            try:
                if self._jwks_url is None:
                    self._jwks_url = await self._discover()
                data = await self._fetch(self._jwks_url)
                self.fetches += 1
                self._keys = _parse_jwks(data, self.config.algorithms)
                self._loaded_at = self._clock()
                self._failed_at = None
            except Exception as exc:  # a failed fetch keeps the keys already known; tokens fail closed
                self._failed_at = self._clock()
                log.warning("OAuth: cannot load the signing keys of %s: %s", self.config.issuer, _reason(exc))

    async def _discover(self) -> str:
        from crm_mcp.connectors.http import check_base_url

        errors: list[str] = []
        for url in metadata_urls(self.config.issuer):
            try:
                meta = await self._fetch(url)
            except Exception as exc:
                errors.append(_reason(exc))
                continue
            if not isinstance(meta, dict) or meta.get("issuer") != self.config.issuer:
                # RFC 8414 §3.3: metadata for another issuer must not be used
                errors.append(
                    f"{url} names issuer {meta.get('issuer') if isinstance(meta, dict) else None!r}"
                )
                continue
            jwks_uri = meta.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                errors.append(f"{url} has no jwks_uri")
                continue
            check_base_url(jwks_uri)
            return jwks_uri
        raise LookupError("no usable authorization-server metadata: " + "; ".join(errors))


@dataclass(frozen=True)
class _Key:
    public_key: Any
    alg: str | None  # the JWK's own `alg`, when it names one


def _parse_jwks(data: Any, algorithms: tuple[str, ...]) -> dict[str | None, _Key]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("the JWKS has no `keys` list")
    keys: dict[str | None, _Key] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") == "oct":  # a shared secret has no place in a public key set
            continue
        if entry.get("alg") is not None and entry["alg"] not in algorithms:
            continue
        try:
            keys[entry.get("kid")] = _Key(jwt.PyJWK(entry).key, entry.get("alg"))
        except Exception as exc:
            log.debug("OAuth: skipping a JWKS key we cannot use: %s", exc)
    return keys


async def _default_fetch(url: str) -> Any:
    from crm_mcp.connectors.http import fetch_json

    return await fetch_json(url)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class JwtVerifier:
    """An MCP `TokenVerifier` for JWT access tokens from the configured issuer."""

    def __init__(self, config: OAuthConfig, jwks: JwksCache | None = None) -> None:
        self.config = config
        self.jwks = jwks or JwksCache(config)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            return await self._verify(token)
        except jwt.PyJWTError as exc:
            log.info("OAuth: refused an access token (%s)", _reason(exc))
            return None

    async def _verify(self, token: str) -> AccessToken | None:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise jwt.InvalidAlgorithmError(f"algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        key = await self.jwks.key(kid if isinstance(kid, str) else None, alg)
        if key is None:
            raise jwt.InvalidKeyError(f"no signing key {kid!r} in the issuer's JWKS")
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=self.config.audience,
            issuer=self.config.issuer,
            leeway=self.config.leeway_s,
            options={"require": ["exp", "iss", "aud", "sub"], "verify_iat": True},
        )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise jwt.MissingRequiredClaimError("sub")
        if int(claims["exp"]) < int(time.time()):  # the leeway is for nbf/iat skew, not expiry
            raise jwt.ExpiredSignatureError("the token has expired")
        return AccessToken(
            token="***",  # noqa: S106  (the raw token is never kept)
            client_id=subject,
            scopes=_scopes(claims),
            expires_at=int(claims["exp"]),
            resource=self.config.audience,
            subject=subject,
            claims={k: claims[k] for k in ("iss", "aud", "azp", "client_id", "jti") if k in claims},
        )


def _scopes(claims: dict[str, Any]) -> list[str]:
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [str(v) for v in value]
    return []


def protected_resource_document(config: OAuthConfig) -> dict[str, Any]:
    """The RFC 9728 metadata: this resource, its one authorization server, its scopes."""
    return {
        "resource": config.resource_url,
        "authorization_servers": [config.issuer],
        "scopes_supported": SCOPES_SUPPORTED,
        "bearer_methods_supported": ["header"],
        "resource_name": "crm-mcp",
    }


def resource_metadata_url(resource_url: str) -> str:
    """RFC 9728 §3.1: the well-known path inserted between the host and the resource's path."""
    parts = urlsplit(resource_url)
    return f"{parts.scheme}://{parts.netloc}{PRM_PATH}{parts.path.rstrip('/')}"


def install_protected_resource(app: Starlette, config: OAuthConfig) -> None:
    """Serve our metadata at the RFC 9728 path (and the bare well-known path, which some clients
    try first), in place of the SDK's, which cannot name scopes without requiring all of them."""
    from mcp.server.auth.routes import cors_middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    document = protected_resource_document(config)

    async def metadata(request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

    paths = {urlsplit(resource_metadata_url(config.resource_url)).path, PRM_PATH}
    endpoint = cors_middleware(metadata, ["GET", "OPTIONS"])
    ours: list[BaseRoute] = [Route(p, endpoint=endpoint, methods=["GET", "OPTIONS"]) for p in sorted(paths)]
    kept = [r for r in app.router.routes if getattr(r, "path", None) not in paths]
    app.router.routes[:] = [*ours, *kept]

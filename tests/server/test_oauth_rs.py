"""crm-mcp as an OAuth 2.1 resource server (docs/oauth.md), tried over real HTTP: httpx2 and an MCP
client against `crm-mcp serve --transport http` in a subprocess, with a small authorization server
of the tests' own on loopback (tests/support/authserver.py) that publishes metadata and a JWKS and
mints RS256 access tokens.

One test per case: the discovery flow from the protected-resource metadata to a tool call; no
token, a wrong audience, an expired token, a future `nbf`, a wrong issuer, `alg: none` and HS256
signed with the public key are all 401; an unknown key id makes the server fetch the JWKS again,
once, then refuse; beyond loopback the metadata names the public URL, never the bind address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.server.test_http_security import MCP_HEADERS, initialize
from tests.server.test_transports import clean_env, free_port, serving
from tests.support.authserver import CLIENTS, AuthServer

pytestmark = pytest.mark.anyio

PRM_PATH = "/.well-known/oauth-protected-resource/mcp"


class Served:
    """An authorization server and a crm-mcp server that trusts it."""

    def __init__(self, auth: AuthServer, url: str) -> None:
        self.auth = auth
        self.url = url  # the crm-mcp base URL
        self.resource = f"{url}/mcp"

    def token(self, **claims: Any) -> str:
        return self.auth.mint(**{"aud": self.resource, **claims})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with AuthServer() as auth:
        yield from _serve(auth, tmp_path_factory.mktemp("oauth"))


def _serve(auth: AuthServer, tmp: Path, **extra_env: str) -> Iterator[Served]:
    env = clean_env(tmp)
    env.update({"CRM_MCP_OAUTH_ISSUER": auth.url, **extra_env})
    port = free_port()
    with serving(["--transport", "http", "--no-worker"], env, port):
        yield Served(auth, f"http://127.0.0.1:{port}")


async def mcp_call(url: str, token: str, tool: str, args: dict[str, Any]) -> Any:
    """A tool call through the MCP client over streamable HTTP, with the bearer token."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy") as client,
    ):
        return await client.call_tool(tool, args)


async def status_with(served: Served, token: str) -> int:
    async with httpx2.AsyncClient(timeout=10) as http:
        return (await initialize(http, served.url, authorization=f"Bearer {token}")).status_code


async def test_discovery_from_metadata_to_a_tool_call(served: Served) -> None:
    """What a client that knows only the /mcp URL does: 401 names the metadata; the metadata names
    the authorization server; its metadata names the token endpoint; a token for this resource
    calls a tool. The server itself serves no authorization-server endpoints."""
    async with httpx2.AsyncClient(timeout=10) as http:
        bare = await initialize(http, served.url)
        assert bare.status_code == 401
        challenge = bare.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{served.url}{PRM_PATH}"' in challenge

        prm = (await http.get(f"{served.url}{PRM_PATH}")).json()
        assert prm["resource"] == served.resource
        assert prm["authorization_servers"] == [served.auth.url]
        assert prm["scopes_supported"] == ["crm:read", "crm:write"]
        assert prm["bearer_methods_supported"] == ["header"]

        as_meta = (
            await http.get(f"{prm['authorization_servers'][0]}/.well-known/oauth-authorization-server")
        ).json()
        assert as_meta["issuer"] == served.auth.url
        grant = await http.post(
            as_meta["token_endpoint"],
            data={
                "grant_type": "client_credentials",
                "client_id": "agent",
                "client_secret": CLIENTS["agent"],
                "resource": prm["resource"],  # RFC 8707: the token is for this server
                "scope": "crm:read crm:write",
            },
        )
        assert grant.status_code == 200, grant.text
        token = grant.json()["access_token"]

        for path in ("/.well-known/oauth-authorization-server", "/authorize", "/token", "/register"):
            assert (await http.get(served.url + path)).status_code == 404, path  # not an AS
        metrics = await http.get(f"{served.url}/metrics", headers={"authorization": f"Bearer {token}"})
        assert metrics.status_code == 200  # the ops endpoints take the same tokens

    result = await mcp_call(served.url, token, "get_sync_status", {})
    assert not result.is_error, result.content
    assert served.auth.jwks_hits >= 1


async def test_no_token_is_401_with_resource_metadata(served: Served) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        for headers in (
            {},
            {"authorization": "Basic YWxpY2U6c2VjcmV0"},
            {"authorization": "Bearer not-a-jwt"},
        ):
            answer = await http.post(f"{served.url}/mcp", json={}, headers={**MCP_HEADERS, **headers})
            assert answer.status_code == 401, headers
            assert f'resource_metadata="{served.url}{PRM_PATH}"' in answer.headers["www-authenticate"]
            assert answer.json()["error"] == "invalid_token"


async def test_a_good_token_is_accepted(served: Served) -> None:
    assert await status_with(served, served.token()) == 200
    assert await status_with(served, served.token(aud=["https://other.example", served.resource])) == 200


async def test_wrong_audience_is_401(served: Served) -> None:
    assert await status_with(served, served.token(aud="https://other.example/mcp")) == 401
    assert await status_with(served, served.token(aud=served.url)) == 401  # the origin is not /mcp


async def test_expired_token_is_401(served: Served) -> None:
    assert await status_with(served, served.token(expires_in=-5)) == 401


async def test_not_before_in_the_future_is_401(served: Served) -> None:
    assert await status_with(served, served.token(not_before_in=600)) == 401
    # a few seconds of clock skew between the two servers is tolerated (CRM_MCP_OAUTH_LEEWAY_SECONDS)
    assert await status_with(served, served.token(not_before_in=5)) == 200


async def test_wrong_issuer_is_401(served: Served) -> None:
    """Signed by the right key, but claiming another issuer."""
    assert await status_with(served, served.token(iss="https://evil.example")) == 401


async def test_no_subject_is_401(served: Served) -> None:
    token = served.token(sub="")
    assert await status_with(served, token) == 401


def _unsigned(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_alg_none_and_hs256_with_the_public_key_are_401(served: Served) -> None:
    """The classic forgeries: an unsigned token, and one "signed" with HMAC using the issuer's
    public key (which anyone can fetch from the JWKS) as the secret."""
    from cryptography.hazmat.primitives import serialization

    now = int(time.time())
    claims = {"iss": served.auth.url, "sub": "mallory", "aud": served.resource, "exp": now + 300, "iat": now}
    public_pem = (
        served.auth.keys[served.auth.kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    none = _unsigned({"alg": "none", "typ": "JWT", "kid": served.auth.kid}, claims, None)
    hs256 = _unsigned({"alg": "HS256", "typ": "JWT", "kid": served.auth.kid}, claims, public_pem)
    assert await status_with(served, none) == 401
    assert await status_with(served, hs256) == 401


async def test_an_unknown_key_id_refetches_the_jwks_once_then_401(tmp_path: Path) -> None:
    """A token naming a key the server has not seen makes it fetch the JWKS again (the issuer may
    have rotated its keys); still unknown, the token is refused. A second such token within the
    refetch interval costs the issuer nothing."""
    with AuthServer() as auth:
        for served in _serve(auth, tmp_path):
            assert await status_with(served, served.token()) == 200  # keys loaded
            before = auth.jwks_hits
            assert await status_with(served, served.token(kid="never-published")) == 401
            assert auth.jwks_hits == before + 1
            assert await status_with(served, served.token(kid="also-never-published")) == 401
            assert auth.jwks_hits == before + 1  # rate-limited: no second refetch


async def test_a_rotated_key_is_picked_up(tmp_path: Path) -> None:
    """The issuer rotates its signing key after the server loaded the JWKS: the first token signed
    with the new key makes the server fetch the JWKS again, and is accepted."""
    with AuthServer() as auth:
        for served in _serve(auth, tmp_path):
            assert await status_with(served, served.token()) == 200
            before = auth.jwks_hits
            auth.rotate()
            assert await status_with(served, served.token()) == 200
            assert auth.jwks_hits == before + 1


async def test_beyond_loopback_the_metadata_names_the_public_url(tmp_path: Path) -> None:
    """Bound to 0.0.0.0, the metadata and the audience are CRM_MCP_PUBLIC_URL's (its host is
    answered without CRM_MCP_ALLOWED_HOSTS); 0.0.0.0 appears nowhere. Without it, no start."""
    public = "https://crm.example.com"
    with AuthServer() as auth:
        env = clean_env(tmp_path)
        env["CRM_MCP_OAUTH_ISSUER"] = auth.url
        port = free_port()
        wildcard = ["--transport", "http", "--host", "0.0.0.0", "--no-worker"]
        with pytest.raises(AssertionError, match="CRM_MCP_PUBLIC_URL"), serving(wildcard, env, port):
            pass
        env["CRM_MCP_PUBLIC_URL"] = public
        with serving(["--transport", "http", "--host", "0.0.0.0", "--no-worker"], env, port):
            url = f"http://127.0.0.1:{port}"
            async with httpx2.AsyncClient(timeout=10) as http:
                host = {"host": "crm.example.com"}
                prm = await http.get(url + PRM_PATH, headers=host)
                assert prm.json()["resource"] == f"{public}/mcp"
                assert "0.0.0.0" not in prm.text
                bare = await initialize(http, url, **host)
                assert f'resource_metadata="{public}{PRM_PATH}"' in bare.headers["www-authenticate"]
                good = auth.mint(aud=f"{public}/mcp")
                assert (
                    await initialize(http, url, authorization=f"Bearer {good}", **host)
                ).status_code == 200
                local_aud = auth.mint(aud=f"http://0.0.0.0:{port}/mcp")
                assert (
                    await initialize(http, url, authorization=f"Bearer {local_aud}", **host)
                ).status_code == 401


async def test_the_principal_is_sub_and_scopes_come_from_scope_or_scp(tmp_path: Path) -> None:
    """The contract tenant scoping builds on: AccessToken.client_id is `sub`, AccessToken.scopes
    the token's `scope` (space-separated) or `scp` (a list), checked against the real loopback
    issuer (metadata discovery and JWKS over HTTP)."""
    from crm_mcp.server.oauth_rs import JwtVerifier, OAuthConfig

    with AuthServer() as auth:
        resource = "https://crm.example.com/mcp"
        verifier = JwtVerifier(OAuthConfig(issuer=auth.url, audience=resource, resource_url=resource))
        found = await verifier.verify_token(auth.mint(aud=resource, sub="alice", scope="crm:read"))
        assert found is not None
        assert (found.client_id, found.scopes, found.subject) == ("alice", ["crm:read"], "alice")
        assert found.token == "***"  # the raw token is never kept
        scp = auth.mint(aud=resource, sub="bob", scope=None, extra={"scp": ["crm:read", "crm:write"]})
        found = await verifier.verify_token(scp)
        assert found is not None and (found.client_id, found.scopes) == ("bob", ["crm:read", "crm:write"])
        unscoped = await verifier.verify_token(auth.mint(aud=resource, scope=None))
        assert unscoped is not None and unscoped.scopes == []
        assert auth.metadata_hits == 1 and auth.jwks_hits == 1  # discovered once, then cached


async def test_the_unknown_kid_refetch_is_rate_limited_by_time(tmp_path: Path) -> None:
    """With an injected clock: one refetch for an unknown key id, none more until
    UNKNOWN_KID_REFETCH_S has passed, then one again (a rotation after that is picked up)."""
    from crm_mcp.server.oauth_rs import UNKNOWN_KID_REFETCH_S, JwksCache, OAuthConfig

    now = [1000.0]
    with AuthServer() as auth:
        config = OAuthConfig(issuer=auth.url, audience="x", resource_url="x")
        cache = JwksCache(config, clock=lambda: now[0])
        assert await cache.key(auth.kid, "RS256") is not None
        assert await cache.key("nope", "RS256") is None
        assert await cache.key("nope", "RS256") is None
        assert auth.jwks_hits == 2
        new_kid = auth.rotate()
        assert await cache.key(new_kid, "RS256") is None  # within the interval: not fetched
        now[0] += UNKNOWN_KID_REFETCH_S
        assert await cache.key(new_kid, "RS256") is not None
        assert auth.jwks_hits == 3
        assert await cache.key(new_kid, "ES256") is None  # the JWK says RS256: bound to it


async def test_an_unreachable_issuer_fails_closed(tmp_path: Path) -> None:
    """The issuer is down: the server starts, and refuses every token (nothing to check it with)."""
    port = free_port()
    with AuthServer() as auth:
        issuer = auth.url
        token = auth.mint(aud=f"http://127.0.0.1:{port}/mcp")  # good, but nobody can check it now
    env = clean_env(tmp_path)
    env["CRM_MCP_OAUTH_ISSUER"] = issuer
    with serving(["--transport", "http", "--no-worker"], env, port):
        url = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient(timeout=20) as http:
            with anyio.fail_after(30):
                answer = await initialize(http, url, authorization=f"Bearer {token}")
            assert answer.status_code == 401


async def test_a_down_issuer_is_asked_at_most_once_per_interval() -> None:
    """While the issuer cannot be reached, tokens do not each cost a fetch attempt (they are
    refused); after the interval the server tries again and recovers."""
    from crm_mcp.connectors.http import fetch_json
    from crm_mcp.server.oauth_rs import UNKNOWN_KID_REFETCH_S, JwksCache, OAuthConfig

    attempts: list[str] = []

    async def counting(url: str) -> Any:
        attempts.append(url)
        return await fetch_json(url)

    now = [1000.0]
    with AuthServer() as auth:
        kid, issuer = auth.kid, auth.url
        port = issuer.rsplit(":", 1)[1]
    cache = JwksCache(OAuthConfig(issuer=issuer, audience="x", resource_url="x"), counting, lambda: now[0])
    for _ in range(5):
        assert await cache.key(kid, "RS256") is None
    tried = len(attempts)
    assert tried >= 1  # the metadata URLs, once
    assert all(port in url for url in attempts)
    now[0] += UNKNOWN_KID_REFETCH_S
    assert await cache.key(kid, "RS256") is None
    assert len(attempts) == 2 * tried

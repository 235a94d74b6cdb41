"""A small OAuth authorization server on loopback, for tests of crm-mcp as a resource server.

It serves what a real one (Keycloak, Auth0, Entra ID) serves to a resource server and a client:

- `GET /.well-known/oauth-authorization-server` (RFC 8414 metadata: issuer, jwks_uri,
  token_endpoint),
- `GET /jwks` (its public signing keys; `jwks_hits` counts the fetches),
- `POST /token` (the client-credentials grant: a registered client gets an RS256 access token
  for the `resource` it names, RFC 8707, with the scopes it asks for).

`mint(...)` signs any token a test needs (expired, wrong audience, unknown key id...), and
`rotate()` publishes a new signing key, as an authorization server does when it rotates keys.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENTS = {"agent": "agent-secret-0123456789"}  # client_id -> client_secret


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class AuthServer:
    """Start with `with AuthServer() as auth:`; `auth.url` is its issuer."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = self.rotate()
        self.jwks_hits = 0
        self.metadata_hits = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> AuthServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- keys and tokens ---------------------------------------------------------------------
    def rotate(self) -> str:
        """Publish a new signing key; new tokens are signed with it. Returns its key id."""
        kid = f"key-{len(self.keys) + 1}"
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.keys.items():
            numbers = key.public_key().public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "kid": kid,
                    "use": "sig",
                    "alg": "RS256",
                    "n": _b64(numbers.n),
                    "e": _b64(numbers.e),
                }
            )
        return {"keys": keys}

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "token_endpoint": f"{self.url}/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["token"],
            "scopes_supported": ["crm:read", "crm:write"],
        }

    def mint(
        self,
        *,
        aud: str | list[str],
        sub: str = "alice",
        scope: str | None = "crm:read crm:write",
        iss: str | None = None,
        expires_in: float = 300,
        not_before_in: float | None = None,
        kid: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An RS256 access token; `kid` may name a key this server never published (the token is
        then signed with the current key but says otherwise)."""
        now = time.time()
        claims: dict[str, Any] = {
            "iss": iss or self.url,
            "sub": sub,
            "aud": aud,
            "iat": int(now),
            "exp": int(now + expires_in),
            "jti": uuid.uuid4().hex,
        }
        if scope is not None:
            claims["scope"] = scope
        if not_before_in is not None:
            claims["nbf"] = int(now + not_before_in)
        claims.update(extra or {})
        key = self.keys.get(kid or self.kid, self.keys[self.kid])
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid or self.kid})

    # -- HTTP -------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        auth = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/oauth-authorization-server":
                    auth.metadata_hits += 1
                    self._json(200, auth.metadata())
                elif self.path == "/jwks":
                    auth.jwks_hits += 1
                    self._json(200, auth.jwks())
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                if self.path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if form.get("grant_type") != "client_credentials":
                    self._json(400, {"error": "unsupported_grant_type"})
                    return
                client = form.get("client_id", "")
                if CLIENTS.get(client) != form.get("client_secret"):
                    self._json(401, {"error": "invalid_client"})
                    return
                if not form.get("resource"):
                    self._json(400, {"error": "invalid_target", "error_description": "name the resource"})
                    return
                scope = form.get("scope", "crm:read")
                token = auth.mint(aud=form["resource"], sub=client, scope=scope)
                self._json(
                    200, {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": scope}
                )

        return Handler

"""Sign webhooks the way each provider does, with generated test keys, for the simulators and tests.

This is written independently of `crm_mcp.sync.signatures` (the sandbox may not import the sync
engine), so a test that signs here and verifies there checks the two against each other rather
than a function against itself. Keys are generated per signer: no production secret is ever
needed to exercise the webhook path end to end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

_HUBSPOT_DECODED = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class GHLWebhookSigner:
    """A GoHighLevel-style signer: an RSA pair for ``x-wh-signature`` and an Ed25519 pair for
    ``X-GHL-Signature``. GoHighLevel's own key is 4096-bit; tests may pass 2048 for speed.
    """

    rsa_bits: int = 4096
    _rsa: rsa.RSAPrivateKey = field(init=False, repr=False)
    _ed: ed25519.Ed25519PrivateKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rsa = rsa.generate_private_key(public_exponent=65537, key_size=self.rsa_bits)
        self._ed = ed25519.Ed25519PrivateKey.generate()

    @property
    def rsa_public_pem(self) -> str:
        """The value for the connection option ``webhook_public_key``."""
        return (
            self._rsa.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    @property
    def ed25519_public_pem(self) -> str:
        """The value for the connection option ``webhook_ed25519_public_key`` (PEM form)."""
        return (
            self._ed.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    @property
    def ed25519_public_raw_b64(self) -> str:
        """The same Ed25519 key as base64 of its 32 raw bytes (the other accepted form)."""
        raw = self._ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return _b64(raw)

    def sign_rsa(self, body: bytes) -> str:
        return _b64(self._rsa.sign(body, padding.PKCS1v15(), hashes.SHA256()))

    def sign_ed25519(self, body: bytes) -> str:
        return _b64(self._ed.sign(body))

    def headers(self, body: bytes, *, rsa_sig: bool = True, ed25519_sig: bool = True) -> dict[str, str]:
        out = {"content-type": "application/json"}
        if rsa_sig:
            out["x-wh-signature"] = self.sign_rsa(body)
        if ed25519_sig:
            out["X-GHL-Signature"] = self.sign_ed25519(body)
        return out


def ghl_event_body(
    payload: Mapping[str, Any],
    *,
    timestamp: datetime | None = None,
    webhook_id: str | None = None,
) -> bytes:
    """Serialise a GoHighLevel event the way newer deliveries look: flat, with timestamp/webhookId."""
    body = dict(payload)
    if timestamp is not None:
        body["timestamp"] = timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if webhook_id is not None:
        body["webhookId"] = webhook_id
    return json.dumps(body, separators=(",", ":")).encode()


# -- HubSpot ----------------------------------------------------------------------------------


def hubspot_v3_headers(
    client_secret: str, method: str, uri: str, body: bytes, *, timestamp: datetime
) -> dict[str, str]:
    """``X-HubSpot-Signature-v3`` + ``X-HubSpot-Request-Timestamp`` (ms) for one request."""
    ts_ms = str(int(timestamp.timestamp() * 1000))
    decoded = uri
    for escape in _HUBSPOT_DECODED:
        decoded = decoded.replace(escape, unquote(escape)).replace(escape.lower(), unquote(escape))
    source = method.upper().encode() + decoded.encode() + body + ts_ms.encode()
    sig = _b64(hmac.new(client_secret.encode(), source, hashlib.sha256).digest())
    return {
        "content-type": "application/json",
        "X-HubSpot-Signature-v3": sig,
        "X-HubSpot-Request-Timestamp": ts_ms,
    }


# -- Standard Webhooks (n8n, Make, generic) ---------------------------------------------------


def new_standard_secret(nbytes: int = 32) -> str:
    """A fresh ``whsec_`` secret (24-64 random bytes per the spec)."""
    return "whsec_" + _b64(secrets.token_bytes(nbytes))


def standard_webhook_headers(
    secret_or_secrets: str | Sequence[str],
    body: bytes,
    *,
    msg_id: str | None = None,
    timestamp: datetime | int,
) -> dict[str, str]:
    """``webhook-id``/``webhook-timestamp``/``webhook-signature``; several secrets give several
    ``v1,`` entries, which is how a sender signs during a secret rotation.
    """
    keys = [secret_or_secrets] if isinstance(secret_or_secrets, str) else list(secret_or_secrets)
    mid = msg_id or "msg_" + secrets.token_urlsafe(16)
    ts = str(timestamp if isinstance(timestamp, int) else int(timestamp.timestamp()))
    signed = mid.encode() + b"." + ts.encode() + b"." + body
    entries = [
        "v1," + _b64(hmac.new(base64.b64decode(k.removeprefix("whsec_")), signed, hashlib.sha256).digest())
        for k in keys
    ]
    return {
        "content-type": "application/json",
        "webhook-id": mid,
        "webhook-timestamp": ts,
        "webhook-signature": " ".join(entries),
    }

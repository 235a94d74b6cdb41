"""Sign GoHighLevel webhooks the way GoHighLevel does, with generated test keys.

Written independently of the verifier in `crm_mcp.providers.gohighlevel.webhooks`, so a test that
signs here and verifies there checks the two against each other rather than a function against
itself. Keys are generated per signer: no production secret is needed to exercise the webhook path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from crm_mcp.sandbox.webhook_signer import b64


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
        return b64(raw)

    def sign_rsa(self, body: bytes) -> str:
        return b64(self._rsa.sign(body, padding.PKCS1v15(), hashes.SHA256()))

    def sign_ed25519(self, body: bytes) -> str:
        return b64(self._ed.sign(body))

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

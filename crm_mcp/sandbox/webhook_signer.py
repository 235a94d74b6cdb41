"""Sign webhooks the way each provider does, with generated test keys, for the simulators and tests.

This is written independently of the verifiers (`crm_mcp.connectors.webhooks` and each
provider's `webhooks.py`), so a test that signs here and verifies there checks the two against
each other rather than a function against itself. Keys are generated per signer: no production secret is ever
needed to exercise the webhook path end to end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import unquote

_HUBSPOT_DECODED = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hubspot_v3_headers(
    client_secret: str, method: str, uri: str, body: bytes, *, timestamp: datetime
) -> dict[str, str]:
    """``X-HubSpot-Signature-v3`` + ``X-HubSpot-Request-Timestamp`` (ms) for one request."""
    ts_ms = str(int(timestamp.timestamp() * 1000))
    decoded = uri
    for escape in _HUBSPOT_DECODED:
        decoded = decoded.replace(escape, unquote(escape)).replace(escape.lower(), unquote(escape))
    source = method.upper().encode() + decoded.encode() + body + ts_ms.encode()
    sig = b64(hmac.new(client_secret.encode(), source, hashlib.sha256).digest())
    return {
        "content-type": "application/json",
        "X-HubSpot-Signature-v3": sig,
        "X-HubSpot-Request-Timestamp": ts_ms,
    }


# -- Standard Webhooks (n8n, Make, generic) ---------------------------------------------------


def new_standard_secret(nbytes: int = 32) -> str:
    """A fresh ``whsec_`` secret (24-64 random bytes per the spec)."""
    return "whsec_" + b64(secrets.token_bytes(nbytes))


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
        "v1," + b64(hmac.new(base64.b64decode(k.removeprefix("whsec_")), signed, hashlib.sha256).digest())
        for k in keys
    ]
    return {
        "content-type": "application/json",
        "webhook-id": mid,
        "webhook-timestamp": ts,
        "webhook-signature": " ".join(entries),
    }

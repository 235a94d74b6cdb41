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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- Standard Webhooks (workflow tools, generic senders) ---------------------------------------------------


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

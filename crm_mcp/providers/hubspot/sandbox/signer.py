"""Sign webhooks as HubSpot does (request validation v3), for the simulator and tests.

Written apart from the verifier in `crm_mcp.providers.hubspot.webhooks`, so a test that signs
here and verifies there checks the two against each other rather than a function against itself.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import unquote

from crm_mcp.sandbox.webhook_signer import b64

# HubSpot decodes these escapes in the URI before hashing (request-validation docs).
_DECODED = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B")


def hubspot_v3_headers(
    client_secret: str, method: str, uri: str, body: bytes, *, timestamp: datetime
) -> dict[str, str]:
    """``X-HubSpot-Signature-v3`` + ``X-HubSpot-Request-Timestamp`` (ms) for one request."""
    ts_ms = str(int(timestamp.timestamp() * 1000))
    decoded = uri
    for escape in _DECODED:
        decoded = decoded.replace(escape, unquote(escape)).replace(escape.lower(), unquote(escape))
    source = method.upper().encode() + decoded.encode() + body + ts_ms.encode()
    sig = b64(hmac.new(client_secret.encode(), source, hashlib.sha256).digest())
    return {
        "content-type": "application/json",
        "X-HubSpot-Signature-v3": sig,
        "X-HubSpot-Request-Timestamp": ts_ms,
    }

"""Webhook signature and freshness checks: pure functions, no I/O, clock passed in.

A webhook is trusted only when proven: every scheme here is checked against the exact bytes that
arrived (never a re-serialised body), digests are compared in constant time, and timestamps
outside a ±5 minute window are refused so that a captured request cannot be replayed later.

Schemes (see reference/crm-apis.md §1.12, §3.9, §7):

- GoHighLevel legacy ``x-wh-signature``: base64 RSASSA-PKCS1-v1_5 / SHA-256 over the raw body,
  verified with GoHighLevel's published RSA key (`GHL_RSA_PUBLIC_KEY_PEM`) unless configured.
- GoHighLevel ``X-GHL-Signature``: base64 Ed25519 over the raw body (successor of the above).
- HubSpot ``X-HubSpot-Signature-v3``: base64 HMAC-SHA256(client secret,
  method + uri + body + timestamp) with ``X-HubSpot-Request-Timestamp`` in epoch milliseconds.
- Standard Webhooks (n8n, Make, generic): ``webhook-id``/``webhook-timestamp``/``webhook-signature``,
  HMAC-SHA256 over ``id.timestamp.body`` keyed with a ``whsec_`` secret; several ``v1,`` entries
  and several secrets are accepted at once so secrets can be rotated without downtime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from crm_mcp.errors import CRMError

TOLERANCE = timedelta(minutes=5)

# Verbatim from GoHighLevel's WebhookAuthentication.md (reference Appendix A): the production key.
GHL_RSA_PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
"""

# HubSpot decodes these escapes in the URI before hashing (request-validation docs).
_HUBSPOT_DECODED = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B")


class SignatureRejected(CRMError):
    """The request is not proven to come from the provider (bad, missing or stale signature)."""

    hint = "Check the webhook secret or public key configured for this connection and the sender's clock."


@dataclass(frozen=True)
class Verified:
    """What a successful check established: which scheme, and header-borne id and time if any."""

    scheme: str
    event_id: str | None = None
    timestamp: datetime | None = None


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _epoch(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise SignatureRejected("webhook timestamp is out of range") from None


def check_fresh(ts: datetime, now: datetime, tolerance: timedelta = TOLERANCE) -> None:
    """Refuse timestamps older than `tolerance` or further than `tolerance` in the future."""
    if ts < now - tolerance:
        raise SignatureRejected(f"stale webhook: timestamp {ts.isoformat()} is older than {tolerance}")
    if ts > now + tolerance:
        raise SignatureRejected(f"webhook timestamp {ts.isoformat()} is more than {tolerance} in the future")


def parse_timestamp(value: object) -> datetime | None:
    """An ISO-8601 string or an epoch number (seconds, or milliseconds when that large) -> UTC."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lstrip("-").isdigit():
            return parse_timestamp(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


# -- GoHighLevel ------------------------------------------------------------------------------


def verify_rsa_sha256(body: bytes, signature_b64: str, public_key_pem: str) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 over `body` (GoHighLevel ``x-wh-signature``)."""
    signature = _b64decode(signature_b64)
    if not signature:
        return False
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, RSAPublicKey):
        raise SignatureRejected("configured webhook_public_key is not an RSA public key")
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def load_ed25519_public_key(value: str) -> Ed25519PublicKey:
    """A PEM (SubjectPublicKeyInfo) or the base64 of the raw 32-byte key."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureRejected("configured webhook_ed25519_public_key is not an Ed25519 key")
        return key
    raw = _b64decode(text)
    if raw is None or len(raw) != 32:
        raise SignatureRejected("webhook_ed25519_public_key must be a PEM or base64 of 32 raw bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_ed25519(body: bytes, signature_b64: str, public_key: str) -> bool:
    """Ed25519 over `body` (GoHighLevel ``X-GHL-Signature``)."""
    signature = _b64decode(signature_b64)
    if not signature or len(signature) != 64:
        return False
    try:
        load_ed25519_public_key(public_key).verify(signature, body)
    except InvalidSignature:
        return False
    return True


def verify_gohighlevel(
    body: bytes,
    headers: Mapping[str, str],
    *,
    rsa_public_key: str | None = None,
    ed25519_public_key: str | None = None,
) -> Verified:
    """Accept the request if either GoHighLevel signature verifies.

    Freshness is checked by the caller from the body's ``timestamp`` (GoHighLevel puts no time
    in its headers), after the body has been proven authentic.
    """
    h = {k.lower(): v for k, v in headers.items()}
    ed_sig, rsa_sig = h.get("x-ghl-signature"), h.get("x-wh-signature")
    if not ed_sig and not rsa_sig:
        raise SignatureRejected("missing signature: expected an X-GHL-Signature or x-wh-signature header")
    if ed_sig and ed25519_public_key and verify_ed25519(body, ed_sig, ed25519_public_key):
        return Verified(scheme="ghl-ed25519")
    if rsa_sig and verify_rsa_sha256(body, rsa_sig, rsa_public_key or GHL_RSA_PUBLIC_KEY_PEM):
        return Verified(scheme="ghl-rsa")
    if ed_sig and not ed25519_public_key and not rsa_sig:
        raise SignatureRejected(
            "X-GHL-Signature received but no webhook_ed25519_public_key is configured for this connection"
        )
    raise SignatureRejected("invalid GoHighLevel webhook signature")


# -- HubSpot ----------------------------------------------------------------------------------


def hubspot_uri(url: str) -> str:
    """The URI as HubSpot hashes it: a handful of percent-escapes decoded, the rest left alone."""
    out = url
    for escape in _HUBSPOT_DECODED:
        out = out.replace(escape, unquote(escape)).replace(escape.lower(), unquote(escape))
    return out


def hubspot_v3_signature(client_secret: str, method: str, uri: str, body: bytes, timestamp_ms: str) -> str:
    source = method.upper().encode() + hubspot_uri(uri).encode() + body + timestamp_ms.encode()
    digest = hmac.new(client_secret.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_hubspot_v3(
    *,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    client_secret: str,
    now: datetime,
) -> Verified:
    """HubSpot request validation v3, including its timestamp window."""
    h = {k.lower(): v for k, v in headers.items()}
    signature, ts_ms = h.get("x-hubspot-signature-v3"), h.get("x-hubspot-request-timestamp")
    if not signature or not ts_ms:
        raise SignatureRejected(
            "missing signature: expected X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp headers"
        )
    if not ts_ms.strip().isdigit():
        raise SignatureRejected("X-HubSpot-Request-Timestamp must be epoch milliseconds")
    expected = hubspot_v3_signature(client_secret, method, uri, body, ts_ms.strip())
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureRejected("invalid X-HubSpot-Signature-v3")
    ts = _epoch(int(ts_ms) / 1000)
    check_fresh(ts, now)
    return Verified(scheme="hubspot-v3", timestamp=ts)


# -- Standard Webhooks ------------------------------------------------------------------------


def standard_secret_key(secret: str) -> bytes:
    """``whsec_<base64>`` -> HMAC key bytes (the prefix is optional, as in the reference library)."""
    text = secret.strip().removeprefix("whsec_")
    key = _b64decode(text)
    if not key:
        raise SignatureRejected("a configured Standard Webhooks secret is not whsec_<base64>")
    return key


def standard_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(standard_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard(
    body: bytes, headers: Mapping[str, str], *, secrets: Iterable[str], now: datetime
) -> Verified:
    """Accept if any ``v1`` entry matches any configured secret, and the timestamp is fresh."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sig_header = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sig_header:
        raise SignatureRejected(
            "missing signature: expected webhook-id, webhook-timestamp and webhook-signature headers"
        )
    keys = [s for s in secrets if s]
    if not keys:
        raise SignatureRejected("no webhook secret is configured for this connection")
    if not ts.strip().isdigit():
        raise SignatureRejected("webhook-timestamp must be integer Unix seconds")
    given = [e.encode() for e in sig_header.split() if e.startswith("v1,")]
    expected = [standard_signature(k, msg_id, ts.strip(), body).encode() for k in keys]
    # Compare every pair (no early exit on the secret) so timing says nothing about which matched.
    matched = False
    for candidate in given:
        for want in expected:
            matched |= hmac.compare_digest(candidate, want)
    if not matched:
        raise SignatureRejected("invalid webhook-signature")
    when = _epoch(int(ts))
    check_fresh(when, now)
    return Verified(scheme="standard-webhooks", event_id=msg_id, timestamp=when)

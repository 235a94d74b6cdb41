"""Webhooks, the shared half: signature primitives, the adapter protocol, and neutral change events.

A webhook is trusted only when proven: every scheme is checked against the exact bytes that
arrived (never a re-serialised body), digests are compared in constant time, and timestamps
outside a ±5 minute window are refused so that a captured request cannot be replayed later.

Each provider's `webhooks.py` has a `WebhookAdapter`: it verifies its scheme with these
primitives, splits a body into events with stable ids, names the tenant (location, portal, org)
each event is about, and turns an event into neutral `RemoteChange`s for the engine. Standard
Webhooks (n8n, Make, generic senders: `webhook-id`/`webhook-timestamp`/`webhook-signature`, HMAC
over `id.timestamp.body` with `whsec_` secrets, several at once for rotation) is here, shared.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from crm_mcp.errors import CRMError

TOLERANCE = timedelta(minutes=5)


class SignatureRejected(CRMError):
    """The request is not proven to come from the provider (bad, missing or stale signature)."""

    hint = "Check the webhook secret or public key configured for this connection and the sender's clock."


@dataclass(frozen=True)
class Verified:
    """What a successful check established: which scheme, and header-borne id and time if any."""

    scheme: str
    event_id: str | None = None
    timestamp: datetime | None = None


def b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def epoch(seconds: float) -> datetime:
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


# -- signature primitives ---------------------------------------------------------------------


def verify_rsa_sha256(body: bytes, signature_b64: str, public_key_pem: str) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 over `body` (GoHighLevel ``x-wh-signature``)."""
    signature = b64decode(signature_b64)
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
    raw = b64decode(text)
    if raw is None or len(raw) != 32:
        raise SignatureRejected("webhook_ed25519_public_key must be a PEM or base64 of 32 raw bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_ed25519(body: bytes, signature_b64: str, public_key: str) -> bool:
    """Ed25519 over `body` (GoHighLevel ``X-GHL-Signature``)."""
    signature = b64decode(signature_b64)
    if not signature or len(signature) != 64:
        return False
    try:
        load_ed25519_public_key(public_key).verify(signature, body)
    except InvalidSignature:
        return False
    return True


# -- Standard Webhooks ------------------------------------------------------------------------


def standard_secret_key(secret: str) -> bytes:
    """``whsec_<base64>`` -> HMAC key bytes (the prefix is optional, as in the reference library)."""
    text = secret.strip().removeprefix("whsec_")
    key = b64decode(text)
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
    when = epoch(int(ts))
    check_fresh(when, now)
    return Verified(scheme="standard-webhooks", event_id=msg_id, timestamp=when)


def configured_secrets(options: Mapping[str, Any]) -> list[str]:
    """``webhook_secrets`` (list or whitespace/comma separated) plus ``webhook_secret``."""
    out: list[str] = []
    for key in ("webhook_secrets", "webhook_secret"):
        value = options.get(key)
        if isinstance(value, str):
            out += [v for v in value.replace(",", " ").split() if v]
        elif isinstance(value, list | tuple):
            out += [str(v) for v in value if v]
    return out


# -- the adapter protocol and what it produces --------------------------------------------------


@dataclass(frozen=True)
class IncomingEvent:
    """One event of a verified delivery: a stable id (dedupe key), its type and its payload."""

    event_id: str
    event_type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class RemoteChange:
    """A change a CRM reported, in the neutral vocabulary.

    `kind` contact: `fields` may hold first_name, last_name, email, phone, source and `status`
    (a neutral lead status). `kind` appointment: calendar_id, contact_id, start_time, end_time
    (datetimes), title, notes and `status` (a neutral appointment status). `occurred_at` is the
    CRM's own time for the change (None: use the arrival time); `deleted` says the record is gone.
    """

    kind: Literal["contact", "appointment"]
    remote_id: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    deleted: bool = False
    created: bool = False


class WebhookAdapter(Protocol):
    """A provider's webhooks: verify, split into events, bind to the tenant, turn into changes.

    `tenant_label` names what a connection is bound to ("location", "portal"); `tenant_option`
    is the connection option holding it ("" when the scheme's secret is the connection's own and
    there is nothing to bind). `busy_status` is what to answer when storing failed (a sender that
    retries only on 429 must get 429).
    """

    provider: str
    tenant_option: str
    tenant_label: str
    busy_status: int

    def verify(
        self,
        options: Mapping[str, Any],
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> Verified:
        """Raises SignatureRejected."""
        ...

    def events(self, data: Any, body: bytes, verified: Verified, now: datetime) -> list[IncomingEvent]:
        """Raises ValueError (bad shape) or SignatureRejected (e.g. a stale body timestamp)."""
        ...

    def tenant(self, payload: Mapping[str, Any]) -> str | None: ...

    def changes(
        self, event: IncomingEvent, *, field_ids: Mapping[str, Collection[str]]
    ) -> list[RemoteChange]:
        """The neutral changes an event reports ([] for types the engine does not apply).

        `field_ids` maps logical field names (e.g. lead_status) to the CRM field ids that hold them."""
        ...


class StandardWebhookAdapter:
    """Standard Webhooks for workflow senders (n8n, Make, generic): the `webhook-id` header is the
    event id; the connection's own secrets bind it, so there is no tenant to check; the body is
    stored for automations, not applied to local records."""

    tenant_option = ""
    tenant_label = "account"
    busy_status = 503

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def verify(
        self,
        options: Mapping[str, Any],
        *,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> Verified:
        return verify_standard(body, headers, secrets=configured_secrets(options), now=now)

    def events(self, data: Any, body: bytes, verified: Verified, now: datetime) -> list[IncomingEvent]:
        assert verified.event_id is not None
        payload = data if isinstance(data, dict) else {"data": data}
        return [IncomingEvent(verified.event_id, str(payload.get("type") or "unknown"), payload)]

    def tenant(self, payload: Mapping[str, Any]) -> str | None:
        return None

    def changes(
        self, event: IncomingEvent, *, field_ids: Mapping[str, Collection[str]]
    ) -> list[RemoteChange]:
        return []

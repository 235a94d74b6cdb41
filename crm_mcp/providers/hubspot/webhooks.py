"""HubSpot webhooks: verify signature v3 (HMAC-SHA256 over method + URI + body + timestamp, with a
5-minute window), bind each event to the connection's portal, and turn contact events into
neutral changes.

A HubSpot app's secret covers every portal that installed the app, so a valid signature does not
say whose event it is: `tenant` names the portal (`portalId`) and the inbox refuses any other.
Deliveries are batches (a JSON array); `eventId` alone is documented as not unique, so an event's
id is portal:subscription:event:occurredAt, all stable across retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from crm_mcp.connectors.base import LEAD_STATUSES
from crm_mcp.connectors.webhooks import (
    IncomingEvent,
    RemoteChange,
    SignatureRejected,
    Verified,
    check_fresh,
    epoch,
    parse_timestamp,
)

from .spec import LEAD_STATUS_FROM_WIRE

_MAX_EVENT_ID = 255
# HubSpot decodes these escapes in the URI before hashing (request-validation docs).
_HUBSPOT_DECODED = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A", "%2C", "%3B")


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
    ts = epoch(int(ts_ms) / 1000)
    check_fresh(ts, now)
    return Verified(scheme="hubspot-v3", timestamp=ts)


def public_url(url: str, base: object) -> str:
    """The URL the sender called: behind a proxy, `webhook_base_url` replaces our scheme and host.

    HubSpot signs the full URL it called, so a TLS-terminating proxy in front of us would
    otherwise make every signature look wrong.
    """
    if not base:
        return url
    parts = urlsplit(url)
    return str(base).rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def lead_status_from_wire(value: Any) -> str | None:
    """A lead status option in the neutral vocabulary: HubSpot's default options by `spec`, a
    portal option that already is a neutral word as is, anything else None (not reported)."""
    text = str(value or "").strip()
    neutral = LEAD_STATUS_FROM_WIRE.get(text.upper())
    if neutral is None and text.lower().replace(" ", "_") in LEAD_STATUSES:
        neutral = text.lower().replace(" ", "_")
    return neutral


def _bounded_id(value: str) -> str:
    return value if len(value) <= _MAX_EVENT_ID else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


# contact properties a propertyChange event may carry -> neutral contact fields
_CONTACT_PROPERTIES = {"firstname": "first_name", "lastname": "last_name", "email": "email", "phone": "phone"}


class HubSpotWebhooks:
    """The WebhookAdapter for HubSpot (see `crm_mcp.connectors.webhooks.WebhookAdapter`)."""

    provider = "hubspot"
    tenant_option = "portal_id"
    tenant_label = "portal"
    busy_status = 503

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
        secret = options.get("app_secret") or options.get("client_secret")
        if not secret:
            raise SignatureRejected(
                "no HubSpot app_secret (or client_secret) is configured for this connection"
            )
        uri = public_url(url, options.get("webhook_base_url"))
        return verify_hubspot_v3(
            method=method, uri=uri, body=body, headers=headers, client_secret=str(secret), now=now
        )

    def events(self, data: Any, body: bytes, verified: Verified, now: datetime) -> list[IncomingEvent]:
        items = data if isinstance(data, list) else [data]
        out = []
        for item in items:
            if not isinstance(item, dict) or "eventId" not in item:
                raise ValueError("each HubSpot event must be an object with an eventId")
            parts = (
                item.get("portalId"),
                item.get("subscriptionId"),
                item["eventId"],
                item.get("occurredAt"),
            )
            event_id = ":".join("" if p is None else str(p) for p in parts)
            out.append(
                IncomingEvent(_bounded_id(event_id), str(item.get("subscriptionType") or "unknown"), item)
            )
        if not out:
            raise ValueError("the HubSpot batch is empty")
        return out

    def tenant(self, payload: Mapping[str, Any]) -> str | None:
        portal = payload.get("portalId")
        return None if portal is None else str(portal)

    def changes(
        self, event: IncomingEvent, *, field_ids: Mapping[str, Collection[str]]
    ) -> list[RemoteChange]:
        p = event.payload
        if "objectId" not in p:
            return []
        when = parse_timestamp(p.get("occurredAt"))
        contact_id = str(p["objectId"])
        if event.event_type == "contact.creation":
            return [RemoteChange("contact", contact_id, {}, when, created=True)]
        if event.event_type == "contact.propertyChange":
            name = str(p.get("propertyName") or "")
            value = p.get("propertyValue")
            if name in _CONTACT_PROPERTIES:
                return [RemoteChange("contact", contact_id, {_CONTACT_PROPERTIES[name]: value}, when)]
            if name in field_ids.get("lead_status", ()) or name == "hs_lead_status":
                status = lead_status_from_wire(value)
                return [RemoteChange("contact", contact_id, {"status": status} if status else {}, when)]
            return []
        if event.event_type == "contact.deletion":
            return [RemoteChange("contact", contact_id, {}, when, deleted=True)]
        return []

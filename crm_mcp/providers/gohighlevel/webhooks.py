"""GoHighLevel webhooks: verify (RSA `x-wh-signature` or Ed25519 `X-GHL-Signature`), bind each
event to the connection's location, and turn contact and appointment events into neutral changes.

GoHighLevel signs every account's webhooks with one key, so a valid signature proves only that
GoHighLevel sent the event, not whose it is: `tenant` names the location each event is about,
and the inbox refuses any other. Freshness comes from the body's `timestamp` (GoHighLevel puts no
time in its headers), checked after the body is proven authentic; a delivery without one is
refused (400), since nothing else proves it is not a replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from crm_mcp.connectors.webhooks import (
    IncomingEvent,
    RemoteChange,
    SignatureRejected,
    Verified,
    check_fresh,
    parse_timestamp,
    verify_ed25519,
    verify_rsa_sha256,
)

from .spec import STATUS_FROM_WIRE

_MAX_EVENT_ID = 255
CONTACT_EVENTS = frozenset({"ContactCreate", "ContactUpdate"})
APPOINTMENT_EVENTS = frozenset({"AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"})
# custom-field keys that hold a lead status (besides the ids the caller passes as lead_status)
LEAD_STATUS_KEYS = frozenset({"contact.lead_status", "lead_status"})

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


def bounded_id(value: str) -> str:
    return value if len(value) <= _MAX_EVENT_ID else "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def location_of(event: Mapping[str, Any]) -> str | None:
    """The location an event is about: `locationId`; invoices name it as `altId` with
    `altType: location`; Location* events carry it as their own `id`."""
    if event.get("locationId"):
        return str(event["locationId"])
    if event.get("altType") == "location" and event.get("altId"):
        return str(event["altId"])
    if str(event.get("type") or "").startswith("Location") and event.get("id"):
        return str(event["id"])
    return None


def event_time(payload: Mapping[str, Any]) -> datetime | None:
    """The event's own time: the record's dateUpdated, else the delivery timestamp (else None)."""
    inner = payload.get("appointment")
    inner = inner if isinstance(inner, dict) else {}
    candidates = [inner.get("dateUpdated"), payload.get("dateUpdated"), payload.get("timestamp")]
    if str(payload.get("type", "")).endswith("Create"):
        candidates += [inner.get("dateAdded"), payload.get("dateAdded")]
    for value in candidates:
        if (ts := parse_timestamp(value)) is not None:
            return ts
    return None


def _lead_status(payload: Mapping[str, Any], field_ids: Collection[str]) -> str | None:
    for cf in payload.get("customFields") or []:
        if isinstance(cf, dict) and (cf.get("id") in field_ids or cf.get("key") in LEAD_STATUS_KEYS):
            value = cf.get("value")
            if isinstance(value, str) and value.strip():
                return value.strip().lower().replace(" ", "_")
    return None


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class GoHighLevelWebhooks:
    """The WebhookAdapter for GoHighLevel (see `crm_mcp.connectors.webhooks.WebhookAdapter`)."""

    provider = "gohighlevel"
    tenant_option = "location_id"
    tenant_label = "location"
    busy_status = 429  # GoHighLevel retries a delivery only when answered 429

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
        return verify_gohighlevel(
            body,
            headers,
            rsa_public_key=options.get("webhook_public_key") or None,
            ed25519_public_key=options.get("webhook_ed25519_public_key") or None,
        )

    def events(self, data: Any, body: bytes, verified: Verified, now: datetime) -> list[IncomingEvent]:
        """One event per delivery: `webhookId`, else a sha256 of the raw body, is its id.

        Raises:
            ValueError: the body is not an object, or has no `timestamp` (answered 400).
            SignatureRejected: the timestamp is unreadable, stale or in the future (401).
        """
        if not isinstance(data, dict):
            raise ValueError("a GoHighLevel webhook body must be a JSON object")
        if data.get("timestamp") in (None, ""):
            # no time, no freshness proof: a captured delivery could be replayed forever
            raise ValueError("the GoHighLevel webhook has no timestamp, so its freshness cannot be checked")
        ts = parse_timestamp(data["timestamp"])
        if ts is None:
            raise SignatureRejected("unreadable body timestamp; cannot prove the event is fresh")
        check_fresh(ts, now)
        event_id = str(data.get("webhookId") or "sha256:" + hashlib.sha256(body).hexdigest())
        return [IncomingEvent(bounded_id(event_id), str(data.get("type") or "unknown"), data)]

    def tenant(self, payload: Mapping[str, Any]) -> str | None:
        return location_of(payload)

    def changes(
        self, event: IncomingEvent, *, field_ids: Mapping[str, Collection[str]]
    ) -> list[RemoteChange]:
        p = event.payload
        when = event_time(p)
        if event.event_type in CONTACT_EVENTS:
            fields = _present(
                {
                    "first_name": p.get("firstName"),
                    "last_name": p.get("lastName"),
                    "email": str(p.get("email") or "").strip() or None,
                    "phone": p.get("phone"),
                    "source": p.get("source"),
                    "status": _lead_status(p, field_ids.get("lead_status", ())),
                }
            )
            created = event.event_type == "ContactCreate"
            return [RemoteChange("contact", str(p["id"]), fields, when, created=created)]
        if event.event_type in APPOINTMENT_EVENTS:
            a: Mapping[str, Any] = p["appointment"] if isinstance(p.get("appointment"), dict) else p
            deleted = event.event_type == "AppointmentDelete"
            wire_status = str(a.get("appointmentStatus") or "").lower()
            fields = _present(
                {
                    "calendar_id": a.get("calendarId"),
                    "contact_id": a.get("contactId"),
                    "start_time": parse_timestamp(a.get("startTime")),
                    "end_time": parse_timestamp(a.get("endTime")),
                    "title": a.get("title"),
                    "notes": a.get("notes"),
                    "status": "cancelled" if deleted else STATUS_FROM_WIRE.get(wire_status),
                }
            )
            return [RemoteChange("appointment", str(a["id"]), fields, when, deleted=deleted)]
        return []

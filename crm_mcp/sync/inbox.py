"""The webhook inbox: verify, then store once, then process in order.

A webhook sender retries until it sees a 2xx, so a 2xx must mean "stored durably": `receive`
verifies the signature first (nothing unproven touches the database), parses the body, derives the
provider's event id and inserts one `inbox_events` row per event; the UNIQUE(provider, event_id)
constraint turns a redelivery into a no-op that is still answered 200 (``{"duplicate": true}``),
so the sender stops retrying. Storing is separate from applying: `process_pending` (the worker
loop, or the HTTP layer right after storing) applies events to the local records later, each in
its own transaction together with its `processed_at` mark, so a crash never applies one twice.
What applying a GoHighLevel event means for the local records is in `crm_mcp.sync.inbox_apply`.

GoHighLevel retries a delivery only when answered 429, so a storage failure is answered 429 for
it (503 for everyone else): a busy database must not lose an event.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crm_mcp.errors import redact
from crm_mcp.state.db import Database
from crm_mcp.state.models import InboxEvent
from crm_mcp.sync import signatures
from crm_mcp.sync.conflicts import Policy
from crm_mcp.sync.inbox_apply import Conflict, apply_event
from crm_mcp.sync.signatures import SignatureRejected, Verified

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
STANDARD_WEBHOOK_PROVIDERS = frozenset({"n8n", "make", "generic"})
PROVIDERS = frozenset({"gohighlevel", "hubspot", *STANDARD_WEBHOOK_PROVIDERS})
_MAX_EVENT_ID = 255


@dataclass(frozen=True)
class Receipt:
    """The HTTP answer to a delivery: a status and a small JSON body (``error`` when refused)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    stored: int = 0


@dataclass(frozen=True)
class Incoming:
    event_id: str
    event_type: str
    payload: dict[str, Any]


def _refuse(status: int, message: str) -> Receipt:
    return Receipt(status, {"error": message})


def _secrets(options: Mapping[str, Any]) -> list[str]:
    """``webhook_secrets`` (list or whitespace/comma separated) plus ``webhook_secret``."""
    out: list[str] = []
    for key in ("webhook_secrets", "webhook_secret"):
        value = options.get(key)
        if isinstance(value, str):
            out += [v for v in value.replace(",", " ").split() if v]
        elif isinstance(value, list | tuple):
            out += [str(v) for v in value if v]
    return out


def public_url(url: str, base: object) -> str:
    """The URL the sender called: behind a proxy, `webhook_base_url` replaces our scheme and host.

    HubSpot signs the full URL it called, so a TLS-terminating proxy in front of us would
    otherwise make every signature look wrong.
    """
    if not base:
        return url
    parts = urlsplit(url)
    return str(base).rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def verify(
    provider: str,
    options: Mapping[str, Any],
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> Verified:
    """Check the provider's signature scheme with this connection's keys (raises SignatureRejected)."""
    if provider == "gohighlevel":
        return signatures.verify_gohighlevel(
            body,
            headers,
            rsa_public_key=options.get("webhook_public_key") or None,
            ed25519_public_key=options.get("webhook_ed25519_public_key") or None,
        )
    if provider == "hubspot":
        secret = options.get("client_secret") or options.get("webhook_client_secret")
        if not secret:
            raise SignatureRejected("no HubSpot client_secret is configured for this connection")
        uri = public_url(url, options.get("webhook_base_url"))
        return signatures.verify_hubspot_v3(
            method=method, uri=uri, body=body, headers=headers, client_secret=str(secret), now=now
        )
    return signatures.verify_standard(body, headers, secrets=_secrets(options), now=now)


def _bounded_id(value: str) -> str:
    if len(value) <= _MAX_EVENT_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def events_from(provider: str, data: Any, body: bytes, verified: Verified, now: datetime) -> list[Incoming]:
    """Split a verified, parsed body into events with their ids (ValueError: bad shape).

    GoHighLevel: ``webhookId``, else a sha256 of the raw body; its freshness comes from the body
    ``timestamp`` when present. HubSpot: a batch; eventId alone is documented as not unique, so
    the id is portal:subscription:event:occurredAt (all stable across retries). Standard Webhooks:
    the ``webhook-id`` header.
    """
    if provider == "gohighlevel":
        if not isinstance(data, dict):
            raise ValueError("a GoHighLevel webhook body must be a JSON object")
        if "timestamp" in data:
            ts = signatures.parse_timestamp(data["timestamp"])
            if ts is None:
                raise SignatureRejected("unreadable body timestamp; cannot prove the event is fresh")
            signatures.check_fresh(ts, now)
        event_id = str(data.get("webhookId") or "sha256:" + hashlib.sha256(body).hexdigest())
        return [Incoming(_bounded_id(event_id), str(data.get("type") or "unknown"), data)]
    if provider == "hubspot":
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
            out.append(Incoming(_bounded_id(event_id), str(item.get("subscriptionType") or "unknown"), item))
        if not out:
            raise ValueError("the HubSpot batch is empty")
        return out
    assert verified.event_id is not None
    payload = data if isinstance(data, dict) else {"data": data}
    return [Incoming(_bounded_id(verified.event_id), str(payload.get("type") or "unknown"), payload)]


def _ghl_location(event: Mapping[str, Any]) -> str | None:
    """The location a GoHighLevel event is about: `locationId`; invoices name it as
    `altId` with `altType: location`; Location* events carry it as their own `id`."""
    if event.get("locationId"):
        return str(event["locationId"])
    if event.get("altType") == "location" and event.get("altId"):
        return str(event["altId"])
    if str(event.get("type") or "").startswith("Location") and event.get("id"):
        return str(event["id"])
    return None


def check_tenant(provider: str, options: Mapping[str, Any], events: list[Incoming]) -> str | None:
    """Why the events must be refused because they are not this connection's account, or None.

    A valid signature proves only who sent an event, not whose account it is about: GoHighLevel
    signs every account's webhooks with one key, and a HubSpot app's secret covers every portal
    that installed it. So each event must name this connection's location / portal; one that
    names another, or none, is refused (fail closed).
    """
    if provider == "gohighlevel":
        field_name, expected = "location", options.get("location_id")
        tenants = [_ghl_location(ev.payload) for ev in events]
    elif provider == "hubspot":
        field_name, expected = "portal", options.get("portal_id")
        tenants = [
            None if ev.payload.get("portalId") is None else str(ev.payload["portalId"]) for ev in events
        ]
    else:
        return None  # Standard Webhooks: the secret is this connection's own
    if not expected:
        return f"this connection has no {field_name} id configured, so no event can be bound to it"
    for tenant in tenants:
        if tenant is None:
            return f"the event names no {field_name}; it cannot be bound to this connection"
        if tenant != str(expected):
            return f"the event is for another {field_name}, not this connection's"
    return None


async def store(
    db: Database, provider: str, connection: str, events: list[Incoming], now: datetime
) -> tuple[list[str], list[str]]:
    """Insert events (committed on return); returns (stored ids, duplicate ids)."""
    stored: list[str] = []
    duplicates: list[str] = []
    async with db.begin_write() as session:
        for ev in events:
            row = InboxEvent(
                provider=provider,
                connection=connection,
                event_id=ev.event_id,
                event_type=ev.event_type[:128],
                verified=True,
                payload=ev.payload,
                received_at=now,
            )
            try:
                async with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                duplicates.append(ev.event_id)
            else:
                stored.append(ev.event_id)
    return stored, duplicates


async def receive(
    db: Database,
    *,
    provider: str,
    connection: str,
    options: Mapping[str, Any],
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    max_body: int = MAX_BODY_BYTES,
) -> Receipt:
    """Verify, parse and durably store one delivery; the receipt says what to answer."""
    if provider not in PROVIDERS:
        return _refuse(404, f"unknown webhook provider {provider!r}")
    if len(body) > max_body:
        return _refuse(413, f"webhook body exceeds {max_body} bytes")
    try:
        verified = verify(provider, options, method=method, url=url, headers=headers, body=body, now=now)
    except SignatureRejected as exc:
        logger.warning("webhook refused for %s/%s: %s", provider, connection, exc.message)
        return _refuse(401, exc.message)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _refuse(400, "webhook body is not valid JSON")
    try:
        events = events_from(provider, data, body, verified, now)
    except SignatureRejected as exc:
        return _refuse(401, exc.message)
    except ValueError as exc:
        return _refuse(400, str(exc))
    if foreign := check_tenant(provider, options, events):
        logger.warning("webhook refused for %s/%s: %s", provider, connection, foreign)
        return _refuse(403, foreign)
    try:
        stored, duplicates = await store(db, provider, connection, events, now)
    except SQLAlchemyError as exc:
        logger.error("webhook for %s/%s not stored: %s", provider, connection, type(exc).__name__)
        status = 429 if provider == "gohighlevel" else 503
        return Receipt(status, {"error": "the event could not be stored; retry later"}, {"Retry-After": "5"})
    if not stored:
        return Receipt(200, {"duplicate": True, "event_ids": duplicates})
    body_out: dict[str, Any] = {"stored": len(stored), "event_ids": stored}
    if duplicates:
        body_out["duplicates"] = len(duplicates)
    return Receipt(200, body_out, stored=len(stored))


# -- processing -------------------------------------------------------------------------------


@dataclass
class ProcessReport:
    """What one pass over the inbox did; `conflicts` lets callers count and show them."""

    processed: int = 0
    failed: int = 0
    stale: int = 0
    conflicts: list[Conflict] = field(default_factory=list)


async def process_pending_report(
    db: Database,
    *,
    now: datetime,
    limit: int = 100,
    policies: Mapping[str, Policy] | None = None,
    lead_status_field_ids: Collection[str] = (),
) -> ProcessReport:
    """Apply up to `limit` unprocessed events, oldest first. Idempotent and safe to run in parallel.

    Each event is re-read inside its own write transaction (row-locked with SKIP LOCKED on
    PostgreSQL) and applied together with its `processed_at` mark. A payload that cannot be
    applied is marked processed with a redacted error, so one bad event never blocks the rest;
    database errors propagate and leave the event pending for the next pass.
    """
    report = ProcessReport()
    async with db.sessions() as session:
        ids = list(
            (
                await session.execute(
                    select(InboxEvent.id)
                    .where(InboxEvent.processed_at.is_(None))
                    .order_by(InboxEvent.id)
                    .limit(limit)
                )
            ).scalars()
        )
    for event_pk in ids:
        try:
            async with db.begin_write() as session:
                ev = (
                    await session.execute(
                        select(InboxEvent).where(InboxEvent.id == event_pk).with_for_update(skip_locked=True)
                    )
                ).scalar_one_or_none()
                if ev is None or ev.processed_at is not None:
                    continue
                outcome = await apply_event(
                    session, ev, now=now, policies=policies or {}, lead_status_field_ids=lead_status_field_ids
                )
                ev.processed_at = now
                ev.error = outcome.parked
        except IntegrityError as exc:  # deterministic: retrying would fail the same way forever
            await _mark_failed(db, event_pk, now, exc)
            report.failed += 1
            continue
        except SQLAlchemyError:  # transient (locked, connection lost): stays pending for next pass
            raise
        except Exception as exc:
            await _mark_failed(db, event_pk, now, exc)
            report.failed += 1
            continue
        report.processed += 1
        report.stale += int(outcome.stale)
        report.conflicts.extend(outcome.conflicts)
    return report


async def process_pending(
    db: Database, *, now: datetime, limit: int = 100, policies: Mapping[str, Policy] | None = None
) -> int:
    """Apply pending inbox events; returns how many were handled (applied, skipped or failed)."""
    report = await process_pending_report(db, now=now, limit=limit, policies=policies)
    return report.processed + report.failed


async def _mark_failed(db: Database, event_pk: int, now: datetime, exc: BaseException) -> None:
    message = redact(f"{type(exc).__name__}: {exc}")[:2000]
    logger.warning("inbox event %s could not be applied: %s", event_pk, message)
    async with db.begin_write() as session:
        ev = await session.get(InboxEvent, event_pk)
        if ev is not None and ev.processed_at is None:
            ev.processed_at = now
            ev.error = message

"""The webhook inbox: verify, then store once, then process in order.

A webhook sender retries until it sees a 2xx, so a 2xx must mean "stored durably": `receive`
verifies the signature first (nothing unproven touches the database), parses the body, derives the
provider's event id and inserts one `inbox_events` row per event; the UNIQUE(provider, event_id)
constraint turns a redelivery into a no-op that is still answered 200 (``{"duplicate": true}``),
so the sender stops retrying. Storing is separate from applying: `process_pending` (the worker
loop, or the HTTP layer right after storing) applies events to the local records later, each in
its own transaction together with its `processed_at` mark, so a crash never applies one twice.

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

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mcp.errors import redact
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment, ExternalRef, InboxEvent, Lead, SyncOperation
from crm_mcp.sync import signatures
from crm_mcp.sync.conflicts import Policy, Resolution, log_conflict, policy_for, resolve
from crm_mcp.sync.signatures import SignatureRejected, Verified, parse_timestamp

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


# -- applying GoHighLevel events to local records ---------------------------------------------

# CRM appointment status -> local status (the inverse of sync.actions.CRM_STATUS, plus `invalid`).
GHL_APPOINTMENT_STATUS = {
    "new": "new",
    "confirmed": "confirmed",
    "cancelled": "cancelled",
    "showed": "completed",
    "noshow": "noshow",
    "invalid": "cancelled",
}
LEAD_STATUS_KEYS = frozenset({"contact.lead_status", "lead_status"})
_UNSYNCED = ("pending", "in_flight", "dead")
# Interim home of an appointment's last applied CRM time, until appointments get a column for it.
_APPOINTMENT_MARK = "crm_updated_at"


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed, with both values and how it was resolved."""

    record_type: str
    record_id: str
    field: str
    local_value: Any
    remote_value: Any
    resolution: Resolution


@dataclass
class Outcome:
    stale: bool = False
    conflicts: list[Conflict] = field(default_factory=list)
    parked: str | None = None  # manual-review note, kept on the inbox event

    def merge(
        self,
        record_type: str,
        record_id: str,
        column: str,
        local_value: Any,
        remote_value: Any,
        local_changed_at: datetime | None,
        remote_ts: datetime,
        policies: Mapping[str, Policy],
    ) -> Any:
        """The value `column` should take: the CRM's, unless a local change is still undelivered."""
        if local_value == remote_value or local_changed_at is None:
            return remote_value
        name = f"{record_type}.{column}"
        res = resolve(
            name, local_value, local_changed_at, remote_value, remote_ts, policy_for(name, dict(policies))
        )
        log_conflict(name, record_id, local_value, remote_value, res)
        self.conflicts.append(Conflict(record_type, record_id, column, local_value, remote_value, res))
        if res.needs_review:
            note = f"needs_review: {name} local={local_value!r} remote={remote_value!r}"
            self.parked = f"{self.parked}; {note}" if self.parked else note
        return res.value


def event_time(payload: Mapping[str, Any], received_at: datetime) -> datetime:
    """The event's own time: the record's dateUpdated, else the delivery timestamp, else arrival."""
    inner = payload.get("appointment")
    inner = inner if isinstance(inner, dict) else {}
    candidates = [inner.get("dateUpdated"), payload.get("dateUpdated"), payload.get("timestamp")]
    if str(payload.get("type", "")).endswith("Create"):
        candidates += [inner.get("dateAdded"), payload.get("dateAdded")]
    for value in candidates:
        if (ts := parse_timestamp(value)) is not None:
            return ts
    return received_at


async def apply_event(
    session: AsyncSession,
    ev: InboxEvent,
    *,
    now: datetime,
    policies: Mapping[str, Policy],
    lead_status_field_ids: Collection[str] = (),
) -> Outcome:
    """Apply one stored event to the local records (caller commits). Unknown types are no-ops."""
    if ev.provider != "gohighlevel":
        return Outcome()
    if ev.event_type in ("ContactCreate", "ContactUpdate"):
        return await _apply_contact(session, ev, now, policies, lead_status_field_ids)
    if ev.event_type in ("AppointmentCreate", "AppointmentUpdate", "AppointmentDelete"):
        return await _apply_appointment(session, ev, now, policies, ev.event_type == "AppointmentDelete")
    return Outcome()


async def _ref(
    session: AsyncSession, connection: str, local_type: str, remote_type: str, remote_id: str
) -> ExternalRef | None:
    return (
        await session.execute(
            select(ExternalRef)
            .where(
                ExternalRef.connection == connection,
                ExternalRef.local_type == local_type,
                ExternalRef.remote_type == remote_type,
                ExternalRef.remote_id == remote_id,
            )
            .limit(1)
        )
    ).scalar_one_or_none()


async def _local_changes(session: AsyncSession, entity_type: str, entity_id: str) -> dict[str, datetime]:
    """Fields with a local change not yet delivered to the CRM, and when the change was made."""
    ops = await session.execute(
        select(SyncOperation).where(
            SyncOperation.entity_type == entity_type,
            SyncOperation.entity_id == entity_id,
            SyncOperation.status.in_(_UNSYNCED),
        )
    )
    out: dict[str, datetime] = {}
    for op in ops.scalars():
        payload: dict[str, Any] = op.payload or {}
        keys = set(payload)
        for nested in ("changes", "contact"):  # appointment.status / contact.upsert payload shapes
            if isinstance(payload.get(nested), dict):
                keys |= set(payload[nested])
        for key in keys:
            out[key] = max(out.get(key, op.created_at), op.created_at)
    return out


def _lead_status(payload: Mapping[str, Any], field_ids: Collection[str]) -> str | None:
    for cf in payload.get("customFields") or []:
        if isinstance(cf, dict) and (cf.get("id") in field_ids or cf.get("key") in LEAD_STATUS_KEYS):
            value = cf.get("value")
            if isinstance(value, str) and value.strip():
                return value.strip().lower().replace(" ", "_")
    return None


async def _lead_for(
    session: AsyncSession, connection: str, contact_id: str, email: str | None
) -> Lead | None:
    ref = await _ref(session, connection, "lead", "contact", contact_id)
    if ref is not None and (lead := await session.get(Lead, ref.local_id)) is not None:
        return lead
    if not email:
        return None
    return (
        await session.execute(
            select(Lead)
            .where(Lead.connection == connection, func.lower(Lead.email) == email.lower())
            .order_by(Lead.created_at)
            .limit(1)
        )
    ).scalar_one_or_none()


async def _link(
    session: AsyncSession,
    connection: str,
    local_type: str,
    local_id: str,
    remote_type: str,
    remote_id: str,
    now: datetime,
) -> None:
    """Record local <-> remote once; an existing link of that type is kept (and updated for marks)."""
    existing = (
        await session.execute(
            select(ExternalRef).where(
                ExternalRef.connection == connection,
                ExternalRef.local_type == local_type,
                ExternalRef.local_id == local_id,
                ExternalRef.remote_type == remote_type,
            )
        )
    ).scalar_one_or_none()
    if existing is None:
        session.add(
            ExternalRef(
                connection=connection,
                local_type=local_type,
                local_id=local_id,
                remote_type=remote_type,
                remote_id=remote_id,
                created_at=now,
            )
        )
    elif remote_type == _APPOINTMENT_MARK:
        existing.remote_id = remote_id


async def _apply_contact(
    session: AsyncSession,
    ev: InboxEvent,
    now: datetime,
    policies: Mapping[str, Policy],
    status_ids: Collection[str],
) -> Outcome:
    p = ev.payload
    contact_id = str(p["id"])
    email = str(p.get("email") or "").strip() or None
    ts = event_time(p, ev.received_at)
    remote = {
        "first_name": p.get("firstName"),
        "last_name": p.get("lastName"),
        "email": email,
        "phone": p.get("phone"),
        "status": _lead_status(p, status_ids),
    }
    remote = {k: v for k, v in remote.items() if v is not None}
    out = Outcome()
    lead = await _lead_for(session, ev.connection, contact_id, email)
    if lead is None:
        lead = Lead(
            connection=ev.connection,
            source=str(p.get("source") or "gohighlevel")[:64],
            data={},
            created_at=now,
            updated_at=now,
            **remote,
        )
        session.add(lead)
        await session.flush()
    else:
        last = parse_timestamp((lead.data or {}).get("crm_updated_at"))
        if last is not None and ts < last:
            logger.info(
                "inbox: skipped %s for lead %s: older than the applied CRM state", ev.event_type, lead.id
            )
            return Outcome(stale=True)
        changes = await _local_changes(session, "lead", lead.id)
        for column, value in remote.items():
            merged = out.merge(
                "lead", lead.id, column, getattr(lead, column), value, changes.get(column), ts, policies
            )
            setattr(lead, column, merged)
        lead.updated_at = now
    await _link(session, ev.connection, "lead", lead.id, "contact", contact_id, now)
    lead.data = {**(lead.data or {}), "crm_contact_id": contact_id, "crm_updated_at": ts.isoformat()}
    return out


async def _apply_appointment(
    session: AsyncSession, ev: InboxEvent, now: datetime, policies: Mapping[str, Policy], deleted: bool
) -> Outcome:
    p = ev.payload
    a: dict[str, Any] = p["appointment"] if isinstance(p.get("appointment"), dict) else p
    remote_id = str(a["id"])
    ts = event_time(p, ev.received_at)
    status = (
        "cancelled" if deleted else GHL_APPOINTMENT_STATUS.get(str(a.get("appointmentStatus") or "").lower())
    )
    remote = {
        "calendar_id": a.get("calendarId"),
        "start_time": parse_timestamp(a.get("startTime")),
        "end_time": parse_timestamp(a.get("endTime")),
        "title": a.get("title"),
        "notes": a.get("notes"),
        "status": status,
    }
    remote = {k: v for k, v in remote.items() if v is not None}
    out = Outcome()
    ref = await _ref(session, ev.connection, "appointment", "appointment", remote_id)
    appt = await session.get(Appointment, ref.local_id) if ref is not None else None
    if appt is None:
        # Created in the CRM (or a Delete that overtook its Create: kept, cancelled, so the late
        # Create is recognised as older and cannot resurrect it).
        if "start_time" not in remote:
            raise ValueError(f"appointment {remote_id} has no readable startTime")
        contact_id = str(a.get("contactId") or "")
        ref_lead = await _ref(session, ev.connection, "lead", "contact", contact_id) if contact_id else None
        lead = await session.get(Lead, ref_lead.local_id) if ref_lead is not None else None
        appt = Appointment(
            connection=ev.connection,
            contact_first_name=lead.first_name if lead else None,
            contact_last_name=lead.last_name if lead else None,
            contact_email=lead.email if lead else None,
            contact_phone=lead.phone if lead else None,
            source="gohighlevel",
            created_at=now,
            updated_at=now,
            version=1,
            **{"status": "confirmed", **remote},
        )
        session.add(appt)
        await session.flush()
        await _link(session, ev.connection, "appointment", appt.id, "appointment", remote_id, now)
        if contact_id:
            await _link(session, ev.connection, "appointment", appt.id, "contact", contact_id, now)
    else:
        mark = await _ref_of(session, ev.connection, appt.id)
        if mark is not None and ts < mark:
            logger.info(
                "inbox: skipped %s for appointment %s: older than the applied CRM state",
                ev.event_type,
                appt.id,
            )
            return Outcome(stale=True)
        if deleted:  # a delete says the booking is gone; it is not an edit of its other fields
            remote = {"status": "cancelled"}
        changes = await _local_changes(session, "appointment", appt.id)
        changed = False
        for column, value in remote.items():
            current = getattr(appt, column)
            merged = out.merge(
                "appointment", appt.id, column, current, value, changes.get(column), ts, policies
            )
            if merged != current:
                setattr(appt, column, merged)
                changed = True
        if changed:
            appt.version += 1
            appt.updated_at = now
    await _link(session, ev.connection, "appointment", appt.id, _APPOINTMENT_MARK, ts.isoformat(), now)
    return out


async def _ref_of(session: AsyncSession, connection: str, appointment_id: str) -> datetime | None:
    """The CRM time of the last event applied to this appointment (None before the first)."""
    row = (
        await session.execute(
            select(ExternalRef.remote_id).where(
                ExternalRef.connection == connection,
                ExternalRef.local_type == "appointment",
                ExternalRef.local_id == appointment_id,
                ExternalRef.remote_type == _APPOINTMENT_MARK,
            )
        )
    ).scalar_one_or_none()
    return parse_timestamp(row) if row else None

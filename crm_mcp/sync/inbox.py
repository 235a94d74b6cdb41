"""The webhook inbox: verify, then store once, then process in order.

A webhook sender retries until it sees a 2xx, so a 2xx must mean "stored durably": `receive`
verifies the signature first (nothing unproven touches the database), parses the body, derives the
provider's event id and inserts one `inbox_events` row per event; the UNIQUE(provider,
connection, event_id) constraint turns a redelivery into a no-op that is still answered 200
(``{"duplicate": true}``), so the sender stops retrying. The connection is part of the key: an
event id is unique only within the sender's account, so one tenant's id never makes another
tenant's event a duplicate. Storing is separate from applying: `process_pending` (the worker
loop, or the HTTP layer right after storing) applies events to the local records later, each in
its own transaction together with its `processed_at` mark, so a crash never applies one twice.
Each provider's webhook adapter (its package's `webhooks.py`) verifies its scheme, splits the
body into events, names their tenant and turns them into neutral changes; what a change means for
the local records is in `crm_mcp.sync.inbox_apply`. A storage failure is answered with the
adapter's `busy_status` (429 for a sender that retries only on 429): a busy database must not
lose an event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crm_mcp.connectors.registry import webhook_adapter
from crm_mcp.connectors.webhooks import IncomingEvent, SignatureRejected, WebhookAdapter
from crm_mcp.errors import redact
from crm_mcp.state.db import Database
from crm_mcp.state.models import InboxEvent
from crm_mcp.sync.conflicts import Policy
from crm_mcp.sync.inbox_apply import Conflict, apply_event

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True)
class Receipt:
    """The HTTP answer to a delivery: a status and a small JSON body (``error`` when refused)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    stored: int = 0


def _refuse(status: int, message: str) -> Receipt:
    return Receipt(status, {"error": message})


def check_tenant(
    adapter: WebhookAdapter, options: Mapping[str, Any], events: list[IncomingEvent]
) -> str | None:
    """Why the events must be refused because they are not this connection's account, or None.

    A valid signature proves only who sent an event, not whose account it is about: GoHighLevel
    signs every account's webhooks with one key, and a HubSpot app's secret covers every portal
    that installed it. So each event must name this connection's tenant; one that names another,
    or none, is refused (fail closed). Schemes whose secret is the connection's own bind nothing.
    """
    if not adapter.tenant_option:
        return None
    label, expected = adapter.tenant_label, options.get(adapter.tenant_option)
    if not expected:
        return f"this connection has no {label} id configured, so no event can be bound to it"
    for ev in events:
        tenant = adapter.tenant(ev.payload)
        if tenant is None:
            return f"the event names no {label}; it cannot be bound to this connection"
        if tenant != str(expected):
            return f"the event is for another {label}, not this connection's"
    return None


async def store(
    db: Database, provider: str, connection: str, events: list[IncomingEvent], now: datetime
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
    adapter = webhook_adapter(provider)
    if adapter is None:
        return _refuse(404, f"unknown webhook provider {provider!r}")
    if len(body) > max_body:
        return _refuse(413, f"webhook body exceeds {max_body} bytes")
    try:
        verified = adapter.verify(options, method=method, url=url, headers=headers, body=body, now=now)
    except SignatureRejected as exc:
        logger.warning("webhook refused for %s/%s: %s", provider, connection, exc.message)
        return _refuse(401, exc.message)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _refuse(400, "webhook body is not valid JSON")
    try:
        events = adapter.events(data, body, verified, now)
    except SignatureRejected as exc:
        return _refuse(401, exc.message)
    except ValueError as exc:
        return _refuse(400, str(exc))
    if foreign := check_tenant(adapter, options, events):
        logger.warning("webhook refused for %s/%s: %s", provider, connection, foreign)
        return _refuse(403, foreign)
    try:
        stored, duplicates = await store(db, provider, connection, events, now)
    except SQLAlchemyError as exc:
        logger.error("webhook for %s/%s not stored: %s", provider, connection, type(exc).__name__)
        return Receipt(
            adapter.busy_status, {"error": "the event could not be stored; retry later"}, {"Retry-After": "5"}
        )
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
    field_ids: Mapping[str, Collection[str]] | None = None,
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
                    session, ev, now=now, policies=policies or {}, field_ids=field_ids or {}
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

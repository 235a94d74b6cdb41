"""Read models shared by the tools, the resources, the HTTP routes and the CLI.

Sync status and the dead-letter queue are shown in four places (the get_sync_status and
list_dead_letters tools, the sync:// resources, /readyz and /metrics, `crm-mcp status` and
`crm-mcp dlq`); they are computed here, once, so the four never disagree, and so that no reader
has to import a tool module to reach them.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from crm_mcp.connectors.base import CustomFields
from crm_mcp.connectors.registry import get_provider
from crm_mcp.errors import CRMError
from crm_mcp.state.status import SyncStatus

if TYPE_CHECKING:
    from crm_mcp.runtime import Runtime


class DeadLetterEntry(BaseModel):
    id: str = Field(description="Dead-letter entry id (read sync://dead-letter/{id} for details).")
    operation_id: str
    connection: str
    action: str
    reason: str = Field(description="The final error, already redacted.")
    attempts: int
    dead_at: datetime
    retried_at: datetime | None = None
    retry_count: int = 0
    entity_type: str | None = None
    entity_id: str | None = None
    error_history: list[dict[str, Any]] = Field(
        default_factory=list, description="Every failed attempt: at, error_type, error, status_code."
    )


class DeadLetterList(BaseModel):
    entries: list[DeadLetterEntry]
    count: int = Field(description="Entries in this page.")
    has_more: bool
    next_offset: int | None = None


async def dead_letter_page(
    rt: Runtime, *, connection: str | None, limit: int, offset: int, with_history: bool
) -> DeadLetterList:
    from crm_mcp.state.models import SyncOperation
    from crm_mcp.state.outbox import list_dead_letters

    db = await rt.database()
    async with db.sessions() as session:
        rows = await list_dead_letters(session, connection=connection, limit=limit + 1, offset=offset)
        entries = []
        for row in rows[:limit]:
            op = await session.get(SyncOperation, row.operation_id)
            entries.append(dead_letter_entry(row, op, with_history=with_history))
    more = len(rows) > limit
    return DeadLetterList(
        entries=entries, count=len(entries), has_more=more, next_offset=offset + limit if more else None
    )


def dead_letter_entry(row: Any, op: Any, *, with_history: bool = True) -> DeadLetterEntry:
    return DeadLetterEntry(
        id=row.id,
        operation_id=row.operation_id,
        connection=row.connection,
        action=row.action,
        reason=row.reason,
        attempts=len(row.error_history or []),
        dead_at=row.dead_at,
        retried_at=row.retried_at,
        retry_count=row.retry_count,
        entity_type=op.entity_type if op else None,
        entity_id=op.entity_id if op else None,
        error_history=list(row.error_history or []) if with_history else [],
    )


class OperationAttempt(BaseModel):
    attempt: int
    outcome: str = Field(description="success, retry, dead, ... as the worker recorded it.")
    started_at: datetime
    finished_at: datetime
    duration_ms: int | None = None
    error_type: str | None = None
    error: str | None = Field(None, description="Already redacted.")
    status_code: int | None = Field(None, description="The CRM's HTTP status, when it answered.")


class OperationView(BaseModel):
    """One outbox operation: where it is, what each attempt did, and what it made in the CRM."""

    id: str
    uri: str = Field(description="This resource; subscribe to it to learn when the operation lands.")
    action: str
    connection: str
    entity_type: str
    entity_id: str = Field(description="The local record the operation delivers.")
    status: str = Field(description="pending | in_flight | succeeded | dead.")
    attempts: int
    next_attempt_at: datetime | None = Field(None, description="When it is tried next (pending only).")
    deadline_at: datetime
    last_error: str | None = None
    progress: dict[str, Any] = Field(
        default_factory=dict, description="Steps done so far (a retry resumes after the last)."
    )
    result: dict[str, Any] | None = Field(None, description="What the delivery returned (succeeded only).")
    crm_ids: dict[str, str] = Field(
        default_factory=dict, description="CRM records made or matched for the local record, by type."
    )
    attempt_log: list[OperationAttempt] = Field(description="The latest 50 attempts, oldest first.")
    dead_letters: list[DeadLetterEntry] = Field(
        default_factory=list, description="Each time it went dead, with the full error history."
    )
    created_at: datetime
    updated_at: datetime
    next_step: str


def operation_uri(op_id: str) -> str:
    return f"sync://operations/{op_id}"


async def operation_view(rt: Runtime, op_id: str) -> OperationView | None:
    """The operation `op_id`, or None if there is none. Holds no clock reading, so the text only
    changes when the operation does (subscribers are told exactly then)."""
    from crm_mcp.state.models import SyncOperation
    from crm_mcp.state.operation_log import attempts_of, dead_letters_of
    from crm_mcp.state.refs import refs_of

    db = await rt.database()
    async with db.sessions() as session:
        op = await session.get(SyncOperation, op_id)
        if op is None:
            return None
        attempts = await attempts_of(session, op.id)
        dead = await dead_letters_of(session, op.id)
        crm_ids = await refs_of(session, op.connection, op.entity_type, op.entity_id)
    done = op.status == "succeeded"
    return OperationView(
        id=op.id,
        uri=operation_uri(op.id),
        action=op.action,
        connection=op.connection,
        entity_type=op.entity_type,
        entity_id=op.entity_id,
        status=op.status,
        attempts=op.attempts,
        next_attempt_at=op.next_attempt_at if op.status == "pending" else None,
        deadline_at=op.deadline_at,
        last_error=op.last_error,
        progress={} if done else dict(op.result or {}),
        result=dict(op.result or {}) if done else None,
        crm_ids=crm_ids,
        attempt_log=[OperationAttempt.model_validate(a, from_attributes=True) for a in attempts],
        dead_letters=[dead_letter_entry(row, op) for row in dead],
        created_at=op.created_at,
        updated_at=op.updated_at,
        next_step=_next_step(op.id, op.status),
    )


def _next_step(op_id: str, status: str) -> str:
    if status == "dead":
        return f"Fix the cause in dead_letters, then call retry_failed_sync with operation_id={op_id!r}."
    if status == "succeeded":
        return "Delivered; nothing to do."
    return "Queued for the worker; subscribe to this resource (or read it again) to see it land."


async def current_status(rt: Runtime, *, max_age_s: float = 0.0) -> SyncStatus:
    """The sync status; with `max_age_s`, a snapshot computed at most that long ago is reused
    as long as nothing changed in this process since (other processes show up within max_age_s).

    Readers that find the snapshot stale while another is recomputing it wait for that one, so
    a burst of polls (an HTTP probe, many clients) costs one computation, not one per request.
    """
    if max_age_s <= 0:
        return await _refresh_status(rt)
    if (cached := _cached_status(rt, max_age_s)) is not None:
        return cached
    async with rt.read_lock:
        return _cached_status(rt, max_age_s) or await _refresh_status(rt)


def _cached_status(rt: Runtime, max_age_s: float) -> SyncStatus | None:
    cached = rt.read_cache.get("sync_status")
    if cached is None:
        return None
    at, generation, value = cached
    if generation == rt.generation and time.monotonic() - at <= max_age_s:
        return value  # type: ignore[no-any-return]
    return None


async def _refresh_status(rt: Runtime) -> SyncStatus:
    generation = rt.generation
    status = await _compute_status(rt)
    rt.read_cache["sync_status"] = (time.monotonic(), generation, status)
    return status


async def _compute_status(rt: Runtime) -> SyncStatus:
    from crm_mcp.state.status import HealthThresholds, sync_status

    h = rt.settings.health
    thresholds = HealthThresholds(
        min_success_rate=h.min_success_rate,
        max_dead_letters=h.max_dead_letters,
        max_oldest_pending_s=h.max_oldest_pending_s,
    )
    db = await rt.database()
    async with db.sessions() as session:
        status = await sync_status(session, now=rt.clock(), thresholds=thresholds)
    status.connectors = connector_states(rt)
    return status


def connector_states(rt: Runtime) -> dict[str, Any]:
    """Breaker and quota state per configured connection (no network call: local state only)."""
    out: dict[str, Any] = {}
    for conn in rt.connections():
        if get_provider(conn.provider).connector is None:
            out[conn.name] = {"provider": conn.provider, "webhooks_only": True}
            continue
        try:
            connector = rt.connector(conn.name)
        except CRMError as exc:
            out[conn.name] = {"provider": conn.provider, "error": str(exc)}
            continue
        snap = getattr(connector, "snapshot", None)
        out[conn.name] = {"provider": conn.provider, **(snap() if callable(snap) else {})}
    return out


# -- a connection's fields (analyze_crm_schema, sync_records, crm://{connection}/schema) ---------

MAX_OPTIONS = 20


class SchemaField(BaseModel):
    key: str = Field(description="Field key to use in API calls (e.g. email, contact.budget).")
    label: str = Field(description="CRM data: the field's display label.")
    type: str = Field(description="Provider type, e.g. TEXT, DATE, SINGLE_OPTIONS, NUMERICAL.")
    required: bool = False
    options: list[str] = Field(default_factory=list, description=f"At most {MAX_OPTIONS} options.")
    custom: bool = Field(description="True for a location custom field.")
    id: str | None = None


async def crm_fields(rt: Runtime, connection: str | None, obj: str) -> tuple[str, list[SchemaField]]:
    connector = rt.connector(connection, CustomFields)
    if obj == "appointment":
        neutral = connector.appointment_fields()
    else:
        neutral = [*connector.contact_fields(), *await connector.list_custom_fields()]
    return connector.connection, [
        SchemaField(
            key=f.key,
            label=f.label,
            type=f.type,
            required=f.required,
            options=f.options[:MAX_OPTIONS],
            custom=f.custom,
            id=f.id,
        )
        for f in neutral
    ]

"""Sync tools: get_sync_status, list_dead_letters, retry_failed_sync.

The same facts are resources (`sync://status`, `sync://dead-letter`) for clients that read them;
these tools serve clients without resource support.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from crm_mcp.errors import CRMError
from crm_mcp.state.status import SyncStatus
from crm_mcp.tools._base import crm_tool
from crm_mcp.tools.models import OperationSummary, RetryResult

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

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


def summarize(op: Any) -> OperationSummary:
    return OperationSummary(
        id=op.id,
        action=op.action,
        connection=op.connection,
        status=op.status,
        attempts=op.attempts,
        last_error=op.last_error,
        entity_type=op.entity_type,
        entity_id=op.entity_id,
        next_attempt_at=op.next_attempt_at,
        result=op.result,
    )


async def current_status(rt: Runtime, *, max_age_s: float = 0.0) -> SyncStatus:
    """The sync status; with `max_age_s`, a snapshot computed at most that long ago is reused
    as long as nothing changed in this process since (other processes show up within max_age_s).
    """
    cached = rt.read_cache.get("sync_status")
    if max_age_s > 0 and cached is not None:
        at, generation, value = cached
        if generation == rt.generation and time.monotonic() - at <= max_age_s:
            return value  # type: ignore[no-any-return]
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
        try:
            connector = rt.connector(conn.name)
        except CRMError as exc:
            out[conn.name] = {"provider": conn.provider, "error": str(exc)}
            continue
        snap = getattr(connector, "snapshot", None)
        out[conn.name] = {"provider": conn.provider, **(snap() if callable(snap) else {})}
    return out


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Sync status and health",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
    )
    async def get_sync_status(
        max_age_seconds: Annotated[
            float,
            Field(ge=0, le=60, description="Reuse a snapshot at most this old (0: compute now)."),
        ] = 1.0,
    ) -> SyncStatus:
        """Totals, success rate, backlog, dead letters, recent failures and a health verdict with reasons.

        Same content as the sync://status resource. `generated_at` says when it was computed.
        """
        return await current_status(rt, max_age_s=max_age_seconds)

    @crm_tool(
        server,
        title="List failed syncs (dead-letter queue)",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
    )
    async def list_dead_letters(
        connection: Annotated[str | None, Field(description="Only this connection.")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Page size.")] = 20,
        offset: Annotated[int, Field(ge=0, description="From next_offset of the previous page.")] = 0,
    ) -> DeadLetterList:
        """Operations that failed for good, newest first, with why they failed and every attempt's error."""
        return await dead_letter_page(
            rt, connection=connection, limit=limit, offset=offset, with_history=True
        )

    @crm_tool(
        server,
        title="Retry failed syncs",
        read_only=False,
        destructive=False,
        idempotent=True,
        open_world=False,
    )
    async def retry_failed_sync(
        ctx: Context,
        operation_id: Annotated[
            str | None, Field(description="A dead operation id or dead-letter entry id.")
        ] = None,
        connection: Annotated[
            str | None, Field(description="Retry every dead operation of this connection.")
        ] = None,
        all: Annotated[bool, Field(description="Retry every dead operation.")] = False,
        dry_run: Annotated[bool, Field(description="Only list what would be retried.")] = False,
    ) -> RetryResult:
        """Put dead operations back in the outbox (attempts reset, fresh deadline). Idempotent.

        Fix the cause first (see list_dead_letters); the worker then delivers them again.
        """
        from crm_mcp.state.outbox import retry_dead

        if not (operation_id or connection or all):
            raise ToolError("Say what to retry: operation_id, connection, or all=true.")
        if connection:
            rt.connection(connection)
        db = await rt.database()
        ops = await retry_dead(
            db,
            ids=[operation_id] if operation_id else None,
            connection=connection,
            all_=all,
            now=rt.clock(),
            dry_run=dry_run,
            deadline=timedelta(seconds=rt.settings.sync_deadline_seconds),
        )
        if not dry_run and ops:
            rt.touch()
        summaries = []
        for i, op in enumerate(ops, 1):
            summaries.append(summarize(op))
            await ctx.report_progress(i, len(ops), f"{'checked' if dry_run else 'requeued'} {op.id}")
        if operation_id and not ops:
            msg = (
                f"{operation_id} is not a dead operation (already pending, delivered or unknown); "
                "nothing to do."
            )
        elif dry_run:
            msg = f"{len(ops)} dead operation(s) would be retried."
        else:
            msg = f"{len(ops)} operation(s) requeued; the worker delivers them now."
        return RetryResult(dry_run=dry_run, requeued=summaries, count=len(ops), message=msg)

"""Sync tools: get_sync_status, list_dead_letters, retry_failed_sync.

The same facts are resources (`sync://status`, `sync://dead-letter`) for clients that read them;
these tools serve clients without resource support.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from crm_mcp.state.status import SyncStatus
from crm_mcp.tools._base import crm_tool
from crm_mcp.tools.args import OffsetArg
from crm_mcp.tools.models import OperationSummary, RetryResult
from crm_mcp.views import DeadLetterList, current_status, dead_letter_page

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime


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
        connection: Annotated[
            str | None, Field(min_length=1, max_length=128, description="Only this connection.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Page size.")] = 20,
        offset: OffsetArg = 0,
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
            str | None,
            Field(min_length=1, max_length=64, description="A dead operation id or dead-letter entry id."),
        ] = None,
        connection: Annotated[
            str | None,
            Field(min_length=1, max_length=128, description="Retry every dead operation of this connection."),
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

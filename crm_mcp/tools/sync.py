"""Sync tools: get_sync_status, list_dead_letters, retry_failed_sync.

The same facts are resources (`sync://status`, `sync://dead-letter`) for clients that read them;
these tools serve clients without resource support.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import Field

from crm_mcp.state.status import StatusSummary
from crm_mcp.sync.retry import retry_failed
from crm_mcp.tools._base import crm_tool
from crm_mcp.tools.args import OffsetArg
from crm_mcp.tools.confirm import ConfirmArg, Confirmation, Verdict, ask, confirmed, verdict
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
        detail: Annotated[
            Literal["summary", "full"],
            Field(description='"full": also details (per connection state, recent failures, workers).'),
        ] = "summary",
    ) -> StatusSummary:
        """Sync health verdict with reasons and recommendations, totals, success rate, dead letters,
        backlog age, each connection's verdict; detail="full" as in the sync://status resource."""
        status = await current_status(rt, max_age_s=max_age_seconds)
        return status.summary(full=detail == "full")

    @crm_tool(
        server,
        title="List failed syncs",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
    )
    async def list_dead_letters(
        connection: Annotated[
            str | None, Field(min_length=1, max_length=128, description="Only this connection.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
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
        confirmation: Annotated[ElicitationResult[Confirmation], Resolve(_ask_to_retry)],
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
        confirm: ConfirmArg = False,
    ) -> RetryResult:
        """Put dead operations back in the outbox (attempts reset, fresh deadline); fix the cause first
        (see list_dead_letters). Retrying more than one id asks the user first."""
        if not (operation_id or connection or all):
            raise ToolError("Say what to retry: operation_id, connection, or all=true.")
        unconfirmed = verdict(confirmation) == "unsupported"
        if not unconfirmed:
            confirmed(confirmation, "retry_failed_sync", "requeue these dead operations")
        dry_run = dry_run or unconfirmed  # nobody could be asked: show what would be retried
        outcome = await retry_failed(
            rt, operation_id=operation_id, connection=connection, all_=all, dry_run=dry_run
        )
        ops, msg = outcome.ops, outcome.message
        summaries = []
        for i, op in enumerate(ops, 1):
            summaries.append(summarize(op))
            await ctx.report_progress(i, len(ops), f"{'checked' if dry_run else 'requeued'} {op.id}")
        if unconfirmed and ops:
            msg = (
                f"Nothing was retried: retrying {len(ops)} operation(s) at once needs the user's "
                "confirmation, and this client cannot ask. Show the user this list; if they agree, "
                "call retry_failed_sync again with confirm=true."
            )
        return RetryResult(dry_run=dry_run, requeued=summaries, count=len(ops), message=msg)


def _ask_to_retry(
    ctx: Context, operation_id: str | None, connection: str | None, all: bool, dry_run: bool, confirm: bool
) -> Elicit[Confirmation] | Verdict:
    """A bulk retry (no operation_id) asks the user, or needs confirm=true from a client that cannot ask."""
    if operation_id or dry_run or not (connection or all):
        return ask(ctx, confirm, None)
    scope = f"of connection {connection}" if connection else "of every connection"
    return ask(ctx, confirm, f"Retry every dead sync operation {scope}? Each is sent to its CRM again.")

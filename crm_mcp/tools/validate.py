"""validate_sync: compare the local system of record with the CRM and report (or queue fixes for) drift.

Sync bugs hide: a create that died, a mapping whose remote was deleted by hand, a duplicate
contact a form created. This walks a bounded sample of local records, reads their CRM side
through the rate-limited connector, and reports each kind of drift with both values. With
repair=true it never fixes inline: it queues the fixes in the outbox (local record wins), under
the caller's idempotency key, so a repeated repair queues nothing twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import Field

from crm_mcp.tools._base import crm_tool
from crm_mcp.tools.appointments import ConnectionArg
from crm_mcp.tools.args import SaneDateTime
from crm_mcp.tools.confirm import ConfirmArg, Confirmation, Verdict, ask, confirmed
from crm_mcp.tools.validate_report import ValidationReport, cap_report

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Validate sync with the CRM",
        read_only=False,
        destructive=True,
        idempotent=True,
        open_world=True,
    )
    async def validate_sync(
        ctx: Context,
        confirmation: Annotated[ElicitationResult[Confirmation], Resolve(_ask_to_repair)],
        connection: ConnectionArg = None,
        object: Annotated[
            Literal["appointment", "contact"],
            Field(),
        ] = "appointment",
        since: Annotated[SaneDateTime | None, Field(description="Only records changed since.")] = None,
        sample: Annotated[int, Field(ge=1, le=500, description="Most records compared, newest first.")] = 100,
        repair: Annotated[
            bool, Field(description="Queue fixes (local wins); needs idempotency_key.")
        ] = False,
        idempotency_key: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=150,
                description="Required with repair=true; repeating it queues nothing twice.",
                examples=["<unique-key-per-repair>"],
            ),
        ] = None,
        compare_to: Annotated[
            str | None,
            Field(
                max_length=128,
                description="Compare contacts with this connection's; repair copies (deletes nothing).",
            ),
        ] = None,
        confirm: ConfirmArg = False,
    ) -> ValidationReport:
        """Compare local records with the CRM (missing, mismatched, duplicate, stale, conflicting);
        repair=true queues fixes. compare_to compares two connections' contacts instead."""
        if repair and not idempotency_key:
            raise ToolError(
                "repair=true needs an idempotency_key, so a repeated repair never queues fixes twice."
            )
        confirmed(confirmation, "validate_sync", "queue repairs that overwrite CRM records")
        # lazy: SQLAlchemy stays off start-up
        from crm_mcp.tools.validate_run import run_cross_validation, run_validation

        conn = rt.connection(connection, "contacts")
        if compare_to:
            other = rt.connection(compare_to, "contacts")
            key = idempotency_key if repair else None
            report = await run_cross_validation(rt, ctx, conn.name, other.name, since, sample, key)
            cap_report(report)
            return report
        report = await run_validation(
            rt, ctx, conn.name, object, since, sample, idempotency_key if repair else None
        )
        cap_report(report)
        return report


def _ask_to_repair(
    ctx: Context, repair: bool, idempotency_key: str | None, connection: str | None, confirm: bool
) -> Elicit[Confirmation] | Verdict:
    """repair=true asks the user, or needs confirm=true from a client that cannot ask."""
    where = f" of connection {connection}" if connection else ""
    wanted = repair and idempotency_key  # without a key the call is refused before anything is asked
    question = f"Queue repairs that overwrite CRM records{where} with the local ones?" if wanted else None
    return ask(ctx, confirm, question)

"""`sync_call_logs`: log the phone system's calls on the CRM's leads, now, for a window.

The same pull the worker runs on its schedule (`crm_mcp.sync.call_pull`): new call sessions are
queued through the outbox, one operation per page, then delivered by the worker. The tool waits
for those deliveries (up to `wait_seconds`, reporting progress) so it can say what was written.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from crm_mcp.tools._base import crm_tool
from crm_mcp.tools.args import ConnectionArg, SaneDateTime

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime
    from crm_mcp.state.models import CallLog


class FailedCall(BaseModel):
    call: str
    reason: str


class SyncCallLogsResult(BaseModel):
    source: str
    target: str
    since: datetime
    until: datetime
    dry_run: bool
    calls_seen: int
    already_logged: int
    skipped_blocklist: int
    queued: int = Field(description="New calls queued.")
    delivered: int = Field(description="Delivered while the tool waited.")
    logged_as_calls: int
    logged_as_notes: int
    leads_created: int = Field(description="Distinct leads created for unknown numbers.")
    leads_matched: int = Field(description="Distinct existing leads or contacts calls were logged on.")
    attachments: int
    tasks: int
    skipped_no_record: int
    pending: int = Field(description="Still being delivered.")
    failed: list[FailedCall]
    operations: list[str]
    plan: list[dict[str, Any]] = Field(default_factory=list, description="Dry run: what each call would do.")
    message: str


async def _wait(rt: Runtime, ops: list[str], ctx: Context, seconds: float) -> None:
    """Until every operation finished (delivered or dead) or `seconds` passed, with progress."""
    from sqlalchemy import select

    from crm_mcp.state.models import SyncOperation

    if not ops:
        return
    db = await rt.database()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        async with db.sessions() as session:
            states = Counter(
                (
                    await session.execute(select(SyncOperation.status).where(SyncOperation.id.in_(ops)))
                ).scalars()
            )
        finished = states["succeeded"] + states["dead"]
        await ctx.report_progress(finished, len(ops), f"{finished} of {len(ops)} pages delivered")
        if finished >= len(ops) or loop.time() >= deadline:
            return
        await asyncio.sleep(0.5)


async def _outcome(rt: Runtime, source: str, ops: list[str]) -> tuple[list[CallLog], list[FailedCall]]:
    from sqlalchemy import select

    from crm_mcp.state.models import DeadLetter
    from crm_mcp.sync.call_pull import queued_calls

    rows = await queued_calls(rt, source, ops)
    db = await rt.database()
    async with db.sessions() as session:
        dead = (
            await session.execute(
                select(DeadLetter.operation_id, DeadLetter.reason).where(DeadLetter.operation_id.in_(ops))
            )
        ).all()
    failed = [FailedCall(call=f"page {op_id}", reason=(error or "")[:500]) for op_id, error in dead]
    return rows, failed


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Log phone calls on CRM leads",
        read_only=False,
        destructive=False,
        idempotent=True,
        open_world=True,
    )
    async def sync_call_logs(
        ctx: Context,
        since: Annotated[
            SaneDateTime | None,
            Field(description="Default: since the last pull."),
        ] = None,
        until: Annotated[SaneDateTime | None, Field(description="Default: now.")] = None,
        dry_run: Annotated[bool, Field(description="Show what would be written; write nothing.")] = False,
        source: ConnectionArg = None,
        target: ConnectionArg = None,
        wait_seconds: Annotated[
            float, Field(ge=0, le=600, description="Wait this long for deliveries.")
        ] = 60,
    ) -> SyncCallLogsResult:
        """Log each new call of the phone system (`source`) once on its lead or contact in the CRM
        (`target`), with recording and owner; a missed call gets a task, an unknown number a new lead."""

        from crm_mcp.sync.call_pull import pull_calls

        async def progress(page: int, text: str) -> None:
            await ctx.report_progress(page, None, text)

        pulled = await pull_calls(
            rt, source=source, target=target, since=since, until=until, dry_run=dry_run, progress=progress
        )
        if not dry_run:
            await _wait(rt, pulled.operations, ctx, wait_seconds)
        rows, failed = await _outcome(rt, pulled.source, pulled.operations) if pulled.operations else ([], [])
        kinds = Counter(r.detail.get("kind") for r in rows if r.status == "logged")
        done = [r for r in rows if r.status != "queued"]
        result = SyncCallLogsResult(
            source=pulled.source,
            target=pulled.target,
            since=pulled.since,
            until=pulled.until,
            dry_run=dry_run,
            calls_seen=pulled.seen,
            already_logged=pulled.already_logged,
            skipped_blocklist=pulled.blocked,
            queued=pulled.queued,
            delivered=len(done),
            logged_as_calls=kinds["call"],
            logged_as_notes=kinds["note"],
            leads_created=len(_records(done, created=True)),
            leads_matched=len(_records(done, created=False)),
            attachments=sum(bool(r.detail.get("attachment")) for r in done),
            tasks=sum(bool(r.detail.get("task")) for r in done),
            skipped_no_record=sum(r.status == "skipped" for r in done),
            pending=sum(r.status == "queued" for r in rows),
            failed=failed,
            operations=pulled.operations,
            plan=pulled.plan[:200],
            message="",
        )
        result.message = _message(result)
        return result


def _records(rows: list[CallLog], *, created: bool) -> set[str]:
    """The distinct CRM records calls went on: leads the pipeline created, or records it found."""
    return {
        c
        for r in rows
        if bool(r.detail.get("lead_created")) == created
        for c in r.detail.get("contacts") or ()
    }


def _message(r: SyncCallLogsResult) -> str:
    if r.dry_run:
        new = len(r.plan)
        return f"Dry run: {new} new of {r.calls_seen} calls would be logged on {r.target}; nothing written."
    text = (
        f"{r.calls_seen} calls seen on {r.source}: {r.queued} new, {r.already_logged} already logged, "
        f"{r.skipped_blocklist} on the blocklist. Delivered {r.delivered} to {r.target}."
    )
    if r.pending:
        text += f" {r.pending} still being delivered: follow with get_sync_status."
    if r.failed:
        text += " Some pages failed: see `failed` and list_dead_letters."
    return text

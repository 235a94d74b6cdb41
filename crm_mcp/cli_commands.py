"""Operator commands behind `crm-mcp status | dlq | config | db | sandbox` (rich output)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from typing import Any

from crm_mcp.runtime import Runtime
from crm_mcp.settings import Settings


def _console() -> Any:
    from rich.console import Console

    return Console()


async def _with_runtime(settings: Settings, fn: Any) -> Any:
    rt = Runtime(settings)
    try:
        return await fn(rt)
    finally:
        await rt.aclose()


async def status(args: argparse.Namespace, settings: Settings) -> int:
    from crm_mcp.tools.sync import current_status

    st = await _with_runtime(settings, current_status)
    if args.json:
        print(st.model_dump_json(indent=2))
        return 0
    from rich.table import Table

    console = _console()
    colour = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}.get(st.verdict, "white")
    console.print(f"[bold]Sync status:[/] [{colour}]{st.verdict}[/]")
    table = Table("metric", "value")
    for key, value in st.totals.items():
        table.add_row(f"operations {key}", str(value))
    rate = "n/a" if st.success_rate is None else f"{st.success_rate:.1%}"
    table.add_row("success rate (window)", rate)
    table.add_row("dead letters", str(st.dead_letters))
    table.add_row("oldest pending (s)", f"{st.oldest_pending_age_s or 0:.0f}")
    console.print(table)
    for reason in st.reasons:
        console.print(f"  reason: {reason}")
    for rec in st.recommendations:
        console.print(f"  next: {rec}")
    return 0


async def dlq(args: argparse.Namespace, settings: Settings) -> int:
    console = _console()
    if args.dlq_command == "list":
        from crm_mcp.tools.sync import dead_letter_page

        async def run(rt: Runtime) -> Any:
            return await dead_letter_page(
                rt, connection=args.connection, limit=args.limit, offset=0, with_history=False
            )

        page = await _with_runtime(settings, run)
        if args.json:
            print(page.model_dump_json(indent=2))
            return 0
        from rich.table import Table

        table = Table("entry id", "operation", "action", "connection", "dead at", "reason")
        for e in page.entries:
            table.add_row(
                e.id,
                e.operation_id,
                e.action,
                e.connection,
                e.dead_at.isoformat(timespec="seconds"),
                e.reason[:80],
            )
        console.print(table if page.entries else "The dead-letter queue is empty.")
        return 0
    if args.dlq_command == "show":
        from crm_mcp.state.models import SyncOperation
        from crm_mcp.state.outbox import get_dead_letter
        from crm_mcp.tools.sync import dead_letter_entry

        async def show(rt: Runtime) -> Any:
            db = await rt.database()
            async with db.sessions() as session:
                row = await get_dead_letter(session, args.entry_id)
                if row is None:
                    return None
                op = await session.get(SyncOperation, row.operation_id)
                out = dead_letter_entry(row, op).model_dump(mode="json")
                out["payload"] = op.payload if op else None
                return out

        entry = await _with_runtime(settings, show)
        if entry is None:
            print(f"error: no dead-letter entry {args.entry_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(entry, indent=2))
        return 0
    # retry
    if not (args.entry_id or args.connection or args.all):
        print("error: give an entry id, --connection NAME or --all", file=sys.stderr)
        return 2
    from crm_mcp.state.outbox import retry_dead

    async def retry(rt: Runtime) -> Any:
        return await retry_dead(
            await rt.database(),
            ids=[args.entry_id] if args.entry_id else None,
            connection=args.connection,
            all_=args.all,
            now=rt.clock(),
            dry_run=args.dry_run,
            deadline=timedelta(seconds=settings.sync_deadline_seconds),
        )

    ops = await _with_runtime(settings, retry)
    verb = "would requeue" if args.dry_run else "requeued"
    console.print(f"{verb} {len(ops)} operation(s)")
    for op in ops:
        console.print(f"  {op.id}  {op.action}  {op.connection}")
    return 0


async def config(args: argparse.Namespace, settings: Settings) -> int:
    lines: list[str]
    if args.format == "env":
        lines = [
            "CRM_MCP_GHL_TOKEN=<your private integration token>",
            f"CRM_MCP_GHL_LOCATION_ID={args.location_id}",
        ]
        if args.calendar_id:
            lines.append(f"CRM_MCP_GHL_CALENDAR_ID={args.calendar_id}")
    else:
        lines = [
            f"[connections.{args.name}]",
            'provider = "gohighlevel"',
            'token = "<your private integration token>"',
            f'location_id = "{args.location_id}"',
        ]
        if args.calendar_id:
            lines.append(f'calendar_id = "{args.calendar_id}"')
    print("\n".join(lines))
    return 0


async def db(args: argparse.Namespace, settings: Settings) -> int:
    async def upgrade(rt: Runtime) -> str | None:
        database = await rt.database()
        return await database.current_revision()

    rev = await _with_runtime(settings, upgrade)
    print(f"database at revision {rev}: {Runtime(settings).describe()['database']}", file=sys.stderr)
    return 0


def run_sandbox(*, port: int, burst: int, interval_ms: int) -> int:
    from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
    from crm_mcp.providers.gohighlevel.sandbox.simulator import (
        SANDBOX_CALENDAR_ID,
        SANDBOX_LOCATION_ID,
        SANDBOX_TOKEN,
        GHLSandboxConfig,
    )

    _sim, server = start_ghl_sandbox(
        GHLSandboxConfig(burst_max=burst, burst_interval_ms=interval_ms), port=port
    )
    console = _console()
    console.print(f"[bold]GoHighLevel sandbox[/] at {server.url}  (Ctrl-C to stop)")
    console.print("Point crm-mcp at it with:")
    print(f"CRM_MCP_GHL_BASE_URL={server.url}")
    print(f"CRM_MCP_GHL_TOKEN={SANDBOX_TOKEN}")
    print(f"CRM_MCP_GHL_LOCATION_ID={SANDBOX_LOCATION_ID}")
    print(f"CRM_MCP_GHL_CALENDAR_ID={SANDBOX_CALENDAR_ID}")
    console.print(f"Inspect: GET {server.url}/_sandbox/state   Faults: POST {server.url}/_sandbox/faults")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0

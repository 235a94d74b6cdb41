"""Operator commands behind `crm-mcp status | dlq | config | db | sandbox` (rich output)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta
from typing import Any

from crm_mcp.errors import ConfigurationError
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
    from crm_mcp.views import current_status

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
        from crm_mcp.views import dead_letter_page

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
        from crm_mcp.views import dead_letter_entry

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
    """`config generate`: the connection's .env lines or crm-mcp.toml table, secrets as placeholders."""
    from crm_mcp.connectors.provider import render_config
    from crm_mcp.connectors.registry import get_provider, providers

    options: dict[str, str] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigurationError(f"--set {item!r}: write it as key=value (e.g. --set location_id=...)")
        options[key.strip()] = value
    for key in ("location_id", "calendar_id", "portal_id"):
        if getattr(args, key, None):
            options[key] = getattr(args, key)
    if args.provider:
        provider = get_provider(args.provider)
    else:
        fits = [p for p in providers() if options and set(options) <= set(p.settings.model_fields)]
        if len(fits) != 1:
            names = ", ".join(p.name for p in (fits or providers()))
            raise ConfigurationError(f"Pass --provider: one of {names}.")
        provider = fits[0]
    print(render_config(provider, args.name or provider.name, options, args.format), end="")
    return 0


async def db(args: argparse.Namespace, settings: Settings) -> int:
    async def upgrade(rt: Runtime) -> str | None:
        database = await rt.database()
        return await database.current_revision()

    rev = await _with_runtime(settings, upgrade)
    print(f"database at revision {rev}: {Runtime(settings).describe()['database']}", file=sys.stderr)
    return 0


def run_sandbox(*, port: int, burst: int | None = None, interval_ms: int | None = None) -> int:
    """Start every provider's simulator on loopback, print how to point crm-mcp at each, and wait."""
    from crm_mcp.connectors.registry import providers

    console = _console()
    handles: list[Any] = []
    try:
        for provider in providers():
            if provider.sandbox is None:
                continue
            handle = provider.sandbox(port + len(handles) if port else 0)
            handles.append(handle)
            if burst is not None or interval_ms is not None:
                handle.set_limits(burst=burst, interval_ms=interval_ms)
            console.print(f"[bold]{provider.title} sandbox[/] at {handle.url}")
            for line in handle.credentials_text():
                print(line)
            console.print(
                f"Inspect: GET {handle.url}/_sandbox/state   Faults: POST {handle.url}/_sandbox/faults"
            )
        console.print("(Ctrl-C to stop)")
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for handle in handles:
            handle.stop()
    return 0

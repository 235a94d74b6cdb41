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


SHORT_ID = 8  # `dlq list` shows ids this long unless --wide; any unique prefix is accepted back


async def resolve_dead_letter_id(session: Any, given: str) -> str:
    """The full entry or operation id that `given` (an id or any unique prefix of one) names.

    Raises ConfigurationError (one line, exit 2) when nothing or several entries match."""
    import re

    from sqlalchemy import or_, select

    from crm_mcp.state.models import DeadLetter

    given = given.strip().lower()
    if not re.fullmatch(r"[0-9a-f-]{1,36}", given):
        raise ConfigurationError(
            f"{given!r} is not a dead-letter entry or operation id (hex digits and dashes)."
        )
    rows = (
        await session.execute(
            select(DeadLetter.id, DeadLetter.operation_id).where(
                or_(DeadLetter.id.startswith(given), DeadLetter.operation_id.startswith(given))
            )
        )
    ).all()
    exact = [full for row in rows for full in row if full == given]
    if exact:
        return exact[0]
    if not rows:
        raise ConfigurationError(
            f"no dead-letter entry or operation id starts with {given!r} (see `crm-mcp dlq list`)."
        )
    if len(rows) > 1:
        shown = ", ".join(entry if entry.startswith(given) else op for entry, op in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise ConfigurationError(f"{given!r} is ambiguous: it starts {shown}{more}; give more characters.")
    entry, op = rows[0]
    return str(entry if entry.startswith(given) else op)


def _progress_wanted() -> bool:
    return sys.stderr.isatty()


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

        def short(value: str) -> str:
            return value if args.wide else value[:SHORT_ID]

        if not page.entries:
            console.print("The dead-letter queue is empty.")
            return 0
        id_width = 36 if args.wide else SHORT_ID
        if console.width >= 2 * id_width + 100:  # room for a table whose reasons stay readable
            extra = ["correlation id"] if args.wide else []  # the id its log lines carry
            table = Table(
                "entry", "operation", *extra, "action", "connection", "dead at", "attempts", "reason"
            )
            table.columns[0].no_wrap = table.columns[1].no_wrap = True
            table.columns[-1].overflow = "fold"
            table.columns[-1].ratio = 1
            for e in page.entries:
                table.add_row(
                    short(e.id),
                    short(e.operation_id),
                    *([e.correlation_id or "-"] if args.wide else []),
                    e.action,
                    e.connection,
                    e.dead_at.strftime("%Y-%m-%d %H:%M:%S"),
                    str(e.attempts),
                    e.reason,
                )
            console.print(table)
        else:  # a narrow terminal: one block per entry, the reason wrapped under its line
            from rich.padding import Padding
            from rich.text import Text

            for e in page.entries:
                head = Text.assemble(
                    (short(e.id), "bold"),
                    f"  {e.action}  {e.connection}  {e.dead_at.strftime('%Y-%m-%d %H:%M:%S')}",
                    f"  attempts {e.attempts}",
                )
                console.print(head, overflow="fold")
                if args.wide:
                    console.print(f"  operation {e.operation_id}", highlight=False)
                    console.print(f"  correlation id {e.correlation_id or '-'}", highlight=False)
                console.print(Padding(Text(e.reason, overflow="fold"), (0, 0, 0, 2)))
        if not args.wide:
            console.print(
                "[dim]ids are prefixes: `dlq show|retry` take any unique prefix; "
                "--wide or --json prints them whole[/]"
            )
        return 0
    if args.dlq_command == "show":
        from crm_mcp.state.models import SyncOperation
        from crm_mcp.state.outbox import get_dead_letter
        from crm_mcp.views import dead_letter_entry

        async def show(rt: Runtime) -> Any:
            db = await rt.database()
            async with db.sessions() as session:
                row = await get_dead_letter(session, await resolve_dead_letter_id(session, args.entry_id))
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
        db = await rt.database()
        ids = None
        if args.entry_id:
            async with db.sessions() as session:
                ids = [await resolve_dead_letter_id(session, args.entry_id)]

        async def requeue(ids: list[str] | None, dry_run: bool) -> Any:
            return await retry_dead(
                db,
                ids=ids,
                connection=args.connection,
                all_=args.all,
                now=rt.clock(),
                dry_run=dry_run,
                deadline=timedelta(seconds=settings.sync_deadline_seconds),
            )

        if args.dry_run or ids or not _progress_wanted():
            return await requeue(ids, args.dry_run)
        # many operations: requeue them in batches with a progress bar on stderr
        from rich.console import Console
        from rich.progress import Progress

        todo = [op.id for op in await requeue(None, True)]
        done: list[Any] = []
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("requeueing", total=len(todo))
            for i in range(0, len(todo), 50):
                done += await requeue(todo[i : i + 50], False)
                progress.update(task, completed=min(i + 50, len(todo)))
        return done

    ops = await _with_runtime(settings, retry)
    verb = "would requeue" if args.dry_run else "requeued"
    console.print(f"{verb} {len(ops)} operation(s)")
    for op in ops:
        console.print(f"  {op.id}  {op.action}  {op.connection}", highlight=False)
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


def run_sandbox(
    *,
    port: int,
    burst: int | None = None,
    interval_ms: int | None = None,
    fail: str | None = None,
    rate: float = 1.0,
    fail_path: str | None = None,
) -> int:
    """Start every provider's simulator on loopback, print how to point crm-mcp at each, and wait.

    `fail` / `rate` / `fail_path`: a fault rule on every simulator's API calls from the start
    (`crm_mcp.sandbox.faults.fault_from_flag`)."""
    from crm_mcp.connectors.registry import providers
    from crm_mcp.sandbox.faults import FAULTS_BODY_HELP, fault_from_flag

    fault: dict[str, Any] | None = None
    if fail is not None:
        try:
            fault = fault_from_flag(fail, rate=rate, path=fail_path)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
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
            if fault is not None:
                handle.faults.set(**fault)
            console.print(f"[bold]{provider.title} sandbox[/] at {handle.url}")
            for line in handle.credentials_text():
                print(line)
            print(f"Inspect: GET {handle.url}/_sandbox/state   Faults: POST {handle.url}/_sandbox/faults")
        if fault is not None:
            print(f"Injecting into every simulator's API calls: {json.dumps(fault)}")
        if handles:
            print(FAULTS_BODY_HELP.format(url=handles[0].url))
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

"""`crm-mcp calls sync`: the call-log pull from the terminal, with progress bars.

The same pull the worker runs on its schedule and `sync_call_logs` runs for a model: new call
sessions are queued through the outbox, then delivered here (unless `--no-deliver`, when a running
worker delivers them). A second run writes nothing new.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from crm_mcp.errors import ConfigurationError
from crm_mcp.settings import Settings


def add_calls_parser(sub: Any) -> None:
    c = sub.add_parser("calls", help="the call-log pipeline: log phone calls on CRM leads")
    csub = c.add_subparsers(dest="calls_command", metavar="ACTION", required=True)
    s = csub.add_parser(
        "sync",
        help="pull the phone system's call log now and log new calls on the CRM (progress bars)",
        description="Pull the call log of the telephony connection (CRM_MCP_CALLS_SOURCE) and log "
        "each new call session on the CRM connection (CRM_MCP_CALLS_TARGET), through the outbox. "
        "Without --since, continues from the scheduled pull's checkpoint.",
    )
    s.add_argument("--since", type=_instant, help="calls started at or after this (ISO 8601)")
    s.add_argument("--until", type=_instant, help="calls started before this (ISO 8601; default now)")
    s.add_argument("--dry-run", action="store_true", help="show what would be written; write nothing")
    s.add_argument(
        "--no-deliver", action="store_true", help="only queue; a running `crm-mcp worker` delivers"
    )
    s.add_argument("--json", action="store_true", help="print the result as JSON")


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-12-01T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or an offset such as +01:00")
    return value


async def calls(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from crm_mcp.runtime import Runtime
    from crm_mcp.server.run import build_worker
    from crm_mcp.sync.call_pull import pull_calls

    if args.calls_command != "sync":
        raise ConfigurationError(f"unknown calls action {args.calls_command!r}")
    console = Console(stderr=True)
    rt = Runtime(settings)
    try:
        await rt.warm_up()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            disable=not sys.stderr.isatty(),
        ) as bars:
            pages = bars.add_task("reading the call log", total=None)

            async def page(n: int, text: str) -> None:
                bars.update(pages, completed=n, description=f"reading the call log: {text}")

            pulled = await pull_calls(
                rt, since=args.since, until=args.until, dry_run=args.dry_run, progress=page
            )
            bars.update(pages, total=pulled.pages, completed=pulled.pages)
            if pulled.operations and not (args.dry_run or args.no_deliver):
                delivering = bars.add_task("logging calls", total=len(pulled.operations))
                worker = await build_worker(rt)
                while done := await worker.run_until_idle():
                    bars.advance(delivering, done)
        result = {**pulled.as_dict(), "status": await _counts(rt, pulled.source, pulled.operations)}
    finally:
        await rt.aclose()
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    out = Console()
    if args.dry_run:
        out.print(
            f"Dry run: {len(pulled.plan)} new of {pulled.seen} calls would be logged on {pulled.target}."
        )
        for row in pulled.plan[:50]:
            when, number = row["started_at"], row["number"]
            out.print(f"  {when}  {row['direction']:8s} {row['result']:9s} {number}  {row['would']}")
        return 0
    out.print(
        f"{pulled.seen} calls seen on {pulled.source} ({pulled.since:%Y-%m-%d %H:%M} .. "
        f"{pulled.until:%Y-%m-%d %H:%M} UTC): {pulled.queued} new, {pulled.already_logged} already "
        f"logged, {pulled.blocked} on the blocklist."
    )
    if states := result["status"]:
        out.print(f"Calls by state on {pulled.target}: " + ", ".join(f"{k} {v}" for k, v in states.items()))
    return 0


async def _counts(rt: Any, source: str, ops: list[str]) -> dict[str, int]:
    from collections import Counter

    from crm_mcp.sync.call_pull import queued_calls

    return dict(Counter(row.status for row in await queued_calls(rt, source, ops)))

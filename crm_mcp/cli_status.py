"""`crm-mcp status [--json] [--watch]`: the running server's sync status, read from its database.

The CLI is a separate process: its own breakers and limiters have never seen a request, so they
would always say "closed, full quota". It shows instead what the server and its workers publish
in the database (`crm_mcp.preflight` republishes them every few seconds), each connection's last
preflight, and which database it read, so "status says healthy" can be checked against the right
server. `--watch` redraws the same facts every 2 s until Ctrl-C (rich.live).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from crm_mcp.runtime import Runtime
from crm_mcp.settings import Settings
from crm_mcp.state.status import SyncStatus
from crm_mcp.views import quota

COLOURS = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}
WATCH_EVERY_S = 2.0


async def status(args: argparse.Namespace, settings: Settings) -> int:
    from crm_mcp.views import server_status

    rt = Runtime(settings)
    database = rt.describe()["database"]
    try:
        if getattr(args, "watch", False):
            return await _watch(
                rt, database, every_s=max(0.1, getattr(args, "interval", None) or WATCH_EVERY_S)
            )
        st = await server_status(rt)
    finally:
        await rt.aclose()
    if args.json:
        print(json.dumps({"database": database, **st.model_dump(mode="json")}, indent=2))
        return 0
    Console().print(render(st, database))
    return 0


async def _watch(rt: Runtime, database: str, *, every_s: float) -> int:
    from crm_mcp.views import server_status

    console = Console()
    with Live(render(await server_status(rt), database), console=console, auto_refresh=False) as live:
        try:
            while True:
                await asyncio.sleep(every_s)
                live.update(render(await server_status(rt), database, watching=every_s), refresh=True)
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass
    return 0


def render(st: SyncStatus, database: str, *, watching: float | None = None) -> Group:
    """The status as rich renderables: verdict, numbers, one row per connection, what to do."""
    colour = COLOURS.get(st.verdict, "white")
    head = Text.assemble(
        ("Sync status: ", "bold"),
        (st.verdict, f"bold {colour}"),
        f"   database: {database}",
        f"   at {st.generated_at:%H:%M:%S} UTC",
        f"   (every {watching:g} s, Ctrl-C to stop)" if watching else "",
    )
    numbers = Table("metric", "value", title=None)
    for key, value in st.totals.items():
        numbers.add_row(f"operations {key}", str(value))
    rate = "n/a" if st.success_rate is None else f"{st.success_rate:.1%}"
    numbers.add_row(f"success rate (last {_span(st.window_seconds)})", rate)
    numbers.add_row("due now", str(st.due_now))
    numbers.add_row("dead letters", str(st.dead_letters))
    numbers.add_row("oldest pending (s)", f"{st.oldest_pending_age_s or 0:.0f}")
    numbers.add_row("live workers", str(st.live_workers))
    parts: list[Any] = [head, numbers, connections_table(st.connectors)]
    parts += [Text(f"  reason: {r}") for r in st.reasons]
    parts += [Text(f"  next: {r}") for r in st.recommendations]
    return Group(*parts)


def connections_table(connectors: dict[str, Any]) -> Table:
    table = Table(
        "connection",
        "provider",
        "verdict",
        "pending/in flight/dead",
        "breaker",
        "burst",
        "daily",
        "last check",
        "breaker from",
    )
    for name, c in connectors.items():
        q = c.get("quota") or quota(c)  # crm_mcp.views: the figures of /metrics and the dashboard
        burst, limit, daily = q["burst_remaining"], q["burst_limit"], q["daily_remaining"]
        breaker = q["breaker_state"] or ("webhooks only" if c.get("webhooks_only") else "-")
        verdict = (c.get("health") or {}).get("verdict") or "-"
        b = c.get("backlog") or {}
        backlog = f"{b.get('pending', 0)}/{b.get('in_flight', 0)}/{b.get('dead_letters', 0)}" if b else "-"
        table.add_row(
            name,
            str(c.get("provider", "")),
            Text(verdict, style=COLOURS.get(verdict, "")),
            backlog,
            Text(breaker, style={"open": "red", "half_open": "yellow", "closed": "green"}.get(breaker, "")),
            f"{burst}/{limit}" if burst is not None else "-",
            str(daily) if daily is not None else "-",
            _preflight_cell(c.get("preflight")),
            _reporter(c),
        )
    return table


def _preflight_cell(p: dict[str, Any] | None) -> Text:
    if not p:
        return Text("not checked yet", style="dim")
    at = str(p.get("checked_at", ""))[11:16]
    if p.get("ok"):
        return Text(f"ok ({at})", style="green")
    return Text(f"FAILED: {p.get('failed_check')} ({at})", style="red")


def _reporter(c: dict[str, Any]) -> str:
    if c.get("published_by"):
        pid = str(c["published_by"]).split(":")
        who = f"pid {pid[1]}" if len(pid) > 1 else str(c["published_by"])
        return f"{who} at {str(c.get('published_at', ''))[11:19]}"
    return "no live server" if "published_by" in c else "this process"


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"

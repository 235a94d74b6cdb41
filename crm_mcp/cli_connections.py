"""`crm-mcp connections list|test`: the configured connections, and their preflight from a terminal.

`list` shows each connection's provider, capabilities and last stored preflight (whichever
process ran it: the server at start and every CRM_MCP_PREFLIGHT_INTERVAL_SECONDS, or `test`).
`test` runs the preflight now (token, tenant, calendar; see `crm_mcp.preflight`), stores the
result where the running server reads it, prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from crm_mcp.connectors.registry import get_provider
from crm_mcp.preflight import (
    ConnectionCheck,
    describe_failure,
    last_checks,
    no_connection_advice,
    run_preflight,
)
from crm_mcp.runtime import Runtime
from crm_mcp.settings import Settings

MARKS = {True: ("ok", "green"), False: ("FAIL", "red"), None: ("skip", "dim")}


async def connections(args: argparse.Namespace, settings: Settings) -> int:
    rt = Runtime(settings)
    try:
        conns = rt.connections()
        if not conns:
            reason, advice = no_connection_advice()
            print(f"{reason}\n{advice}")
            return 1
        if args.connections_command == "test":
            return await _test(rt, args)
        return await _list(rt, args)
    finally:
        await rt.aclose()


async def _list(rt: Runtime, args: argparse.Namespace) -> int:
    checks = await last_checks(rt)
    rows: list[dict[str, Any]] = []
    for conn in rt.connections():
        provider = get_provider(conn.provider)
        check = checks.get(conn.name)
        rows.append(
            {
                "name": conn.name,
                "provider": conn.provider,
                "capabilities": sorted(provider.capabilities) or ["webhooks"],
                "last_check": check.model_dump(mode="json") if check else None,
                "problem": describe_failure(check) if check else None,
            }
        )
    if args.json:
        print(json.dumps({"database": rt.describe()["database"], "connections": rows}, indent=2))
        return 0
    table = Table("name", "provider", "capabilities", "last check")
    for row, conn in zip(rows, rt.connections(), strict=True):
        check = checks.get(conn.name)
        table.add_row(row["name"], row["provider"], ", ".join(row["capabilities"]), _last(check))
    Console().print(table)
    return 0


def _last(check: ConnectionCheck | None) -> Text:
    if check is None:
        return Text("never (run `crm-mcp connections test`)", style="dim")
    at = f"{check.checked_at:%Y-%m-%d %H:%M} UTC"
    if check.ok:
        return Text(f"ok at {at}", style="green")
    return Text(f"FAILED at {at}: {describe_failure(check)}", style="red")


async def _test(rt: Runtime, args: argparse.Namespace) -> int:
    known = {c.name for c in rt.connections()}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print(f"error: no connection named {', '.join(unknown)}; configured: {', '.join(sorted(known))}")
        return 2
    results = await run_preflight(rt, args.names or None)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in results], indent=2))
    else:
        console = Console(highlight=False, soft_wrap=True)
        width = max(len(r.connection) for r in results)
        label = max(len(c.label) for r in results for c in r.checks)
        for r in results:
            for c in r.checks:
                mark, style = MARKS[c.ok]
                said = f"{r.provider} {c.detail}" if c.ok is False else c.detail
                console.print(
                    Text.assemble(
                        (f"{mark:<4}", style), f"  {r.connection:<{width}}  {c.label:<{label}}  {said}"
                    )
                )
                if c.ok is False and c.fix:
                    console.print(f"      fix: {c.fix}")
    return 1 if any(not r.ok for r in results) else 0

"""`crm-mcp demo`: the end-to-end tour on the embedded default, through a real MCP client.

It starts the GoHighLevel simulator in this process, launches `crm-mcp serve` as a subprocess
speaking MCP over stdio (with a throwaway SQLite database), and drives it with the official
client: book, confirm, cancel, complete; show the CRM side; break the CRM and watch a booking go
dead; heal it and retry; print the status.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=False)


def child_env(base_url: str, db_path: Path) -> dict[str, str]:
    from crm_mcp.providers.gohighlevel.sandbox.simulator import (
        SANDBOX_CALENDAR_ID,
        SANDBOX_LOCATION_ID,
        SANDBOX_TOKEN,
    )

    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        {
            "CRM_MCP_GHL_BASE_URL": base_url,
            "CRM_MCP_GHL_TOKEN": SANDBOX_TOKEN,
            "CRM_MCP_GHL_LOCATION_ID": SANDBOX_LOCATION_ID,
            "CRM_MCP_GHL_CALENDAR_ID": SANDBOX_CALENDAR_ID,
            "CRM_MCP_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
            "CRM_MCP_SYNC_BACKOFF_BASE_SECONDS": "0.2",
            "CRM_MCP_SYNC_BACKOFF_CAP_SECONDS": "0.5",
            "CRM_MCP_SYNC_MAX_ATTEMPTS": "3",
            "CRM_MCP_POLL_INTERVAL_SECONDS": "0.1",
            "CRM_MCP_LOG_LEVEL": "ERROR",
        }
    )
    return env


async def call(client: Any, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    result = await client.call_tool(tool, args or {})
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(f"{tool} failed: {text}")
    return dict(result.structured_content or {})


async def wait_settled(client: Any, *, within_s: float = 30.0) -> dict[str, Any]:
    """Poll get_sync_status until nothing is pending or in flight."""
    deadline = time.monotonic() + within_s
    with console.status("waiting for the worker to deliver..."):
        while True:
            st = await call(client, "get_sync_status")
            totals = st.get("totals", {})
            if not totals.get("pending") and not totals.get("in_flight"):
                return st
            if time.monotonic() > deadline:
                return st
            await asyncio.sleep(0.2)


def show_crm(sim: Any) -> None:
    snap = sim.snapshot()
    table = Table(title="In the GoHighLevel sandbox", show_lines=False)
    table.add_column("appointment")
    table.add_column("contact")
    table.add_column("start")
    table.add_column("status")
    contacts = {c["id"]: c for c in snap["contacts"]}
    for a in snap["appointments"]:
        c = contacts.get(a.get("contactId"), {})
        table.add_row(
            a["id"],
            f"{c.get('firstName', '')} {c.get('lastName', '')}".strip(),
            a["startTime"],
            a.get("appointmentStatus", ""),
        )
    console.print(table)
    console.print(
        f"contacts: {len(snap['contacts'])}  notes: {len(snap['notes'])}  tasks: {len(snap['tasks'])}"
    )


async def run_demo() -> int:
    from mcp import Client, StdioServerParameters

    from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox

    sim, server = start_ghl_sandbox()
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-demo-"))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "crm_mcp", "serve"], env=child_env(server.url, tmp / "demo.db")
    )
    console.rule("[bold]crm-mcp demo")
    console.print(f"GoHighLevel sandbox: {server.url}   database: {tmp / 'demo.db'}")
    try:
        async with Client(params, cache=None) as client:
            tools = await client.list_tools()
            console.print(
                f"Connected over stdio: {len(tools.tools)} tools ({', '.join(t.name for t in tools.tools)})"
            )

            console.rule("1. Book three appointments")
            people = [
                ("Ada", "Lovelace", "ada@example.com", "2026-12-01T10:00:00"),
                ("Grace", "Hopper", "grace@example.com", "2026-12-01T11:00:00"),
                ("Alan", "Turing", "alan@example.com", "2026-12-01T14:00:00"),
            ]
            booked = []
            for first, last, email, start in people:
                r = await call(
                    client,
                    "create_appointment",
                    {
                        "first_name": first,
                        "last_name": last,
                        "email": email,
                        "start_time": start,
                        "timezone": "America/New_York",
                        "title": f"Consultation with {first}",
                        "notes": "Booked by the crm-mcp demo",
                        "idempotency_key": f"demo-{email}",
                    },
                )
                booked.append(r)
                console.print(f"  booked {r['appointment']['id']} for {first} -> op {r['sync_operation_id']}")
            await wait_settled(client)

            console.rule("2. Confirm one, cancel one, complete one")
            a, b, c = (r["appointment"]["id"] for r in booked)
            await call(client, "update_appointment_status", {"appointment_id": a, "action": "confirm"})
            await call(
                client,
                "update_appointment_status",
                {"appointment_id": b, "action": "cancel", "reason": "customer asked to reschedule"},
            )
            await call(client, "update_appointment_status", {"appointment_id": c, "action": "complete"})
            await wait_settled(client)
            show_crm(sim)

            console.rule("3. The CRM starts failing")
            sim.faults.set("error", status=503)
            r = await call(
                client,
                "create_appointment",
                {
                    "first_name": "Edsger",
                    "last_name": "Dijkstra",
                    "email": "edsger@example.com",
                    "start_time": "2026-12-02T09:00:00",
                    "timezone": "America/New_York",
                    "idempotency_key": "demo-edsger",
                },
            )
            failing_op = r["sync_operation_id"]
            console.print(f"  booked locally: op {failing_op}; the worker retries with backoff...")
            await wait_settled(client, within_s=60)
            dlq = await call(client, "list_dead_letters")
            table = Table("entry", "action", "attempts", "last error", title="Dead-letter queue")
            for e in dlq["entries"]:
                last = e["error_history"][-1] if e["error_history"] else {}
                table.add_row(
                    e["id"][:8],
                    e["action"],
                    str(e["attempts"]),
                    f"{last.get('error_type', '')} {last.get('status_code') or ''}".strip(),
                )
            console.print(table)

            console.rule("4. Heal the CRM and retry")
            sim.faults.clear()
            r = await call(client, "retry_failed_sync", {"operation_id": failing_op})
            console.print(f"  {r['message']}")
            st = await wait_settled(client)
            show_crm(sim)

            console.rule("5. Sync status")
            console.print(
                f"verdict: [bold]{st['verdict']}[/]  totals: {st['totals']}  "
                f"dead letters: {st['dead_letters']}"
            )
            for reason in st.get("reasons", []):
                console.print(f"  why: {reason}")
            for advice in st.get("recommendations", []):
                console.print(f"  next: {advice}")
            delivered = st["totals"].get("succeeded", 0)
            ok = st["totals"].get("dead", 0) == 0 and len(sim.snapshot()["appointments"]) == 4
            console.print(
                f"[bold {'green' if ok else 'red'}]Summary:[/] {delivered} operations delivered, "
                f"4 appointments in the CRM, 1 failure recovered from the dead-letter queue, "
                f"{st['totals'].get('dead', 0)} still dead."
            )
            return 0 if ok else 1
    finally:
        server.stop()

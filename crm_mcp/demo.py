"""`crm-mcp demo`: the end-to-end tour on the embedded default, through a real MCP client.

It starts every registered provider's simulator in this process (`Provider.sandbox(0)`),
launches `crm-mcp serve` as a subprocess speaking MCP over stdio, configured with each
simulator's connection options as `CRM_MCP_<PREFIX>_<OPTION>` variables and a throwaway SQLite
database, and drives it with the official client: book on the default connection, confirm,
cancel, complete; book one appointment on each connection by name; show what reached each CRM;
break a CRM (its `/_sandbox/faults` switch) and watch a booking go dead; heal it and retry;
print the status with its verdict. Nothing here knows which providers exist: it is the same
tour with one CRM or ten.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rich.console import Console
from rich.table import Table

from crm_mcp.settings import is_loopback_host

if TYPE_CHECKING:
    from crm_mcp.connectors.provider import Provider, SandboxHandle

console = Console(stderr=False)

PEOPLE = [
    ("Ada", "Lovelace"),
    ("Grace", "Hopper"),
    ("Alan", "Turing"),
    ("Katherine", "Johnson"),
    ("Margaret", "Hamilton"),
    ("Barbara", "Liskov"),
    ("Edsger", "Dijkstra"),
]


@runtime_checkable
class Summarized(Protocol):
    """A sandbox handle that can say what its CRM holds: ("appointment", line) rows and counts."""

    def summary(self) -> list[tuple[str, str]]: ...


@dataclass
class Sandbox:
    """One running simulator and the connection (named after its provider) that reaches it."""

    provider: Provider
    handle: SandboxHandle
    booked: int = 0  # appointments the tour sent to this CRM

    @property
    def name(self) -> str:
        return self.provider.name


@dataclass
class Tour:
    client: Any
    sandboxes: list[Sandbox]
    default: Sandbox
    people: list[tuple[str, str]] = field(default_factory=lambda: list(PEOPLE))

    async def book(self, start: str, sandbox: Sandbox, *, named: bool) -> dict[str, Any]:
        """Book the next person; on `sandbox`'s connection by name, or on the default (unnamed)."""
        first, last = self.people.pop(0)
        email = f"{first.lower()}@example.com"
        args = {
            "first_name": first,
            "last_name": last,
            "email": email,
            "start_time": start,
            "timezone": "America/New_York",
            "title": f"Consultation with {first}",
            "notes": "Booked by the crm-mcp demo",
            "idempotency_key": f"demo-{email}",
        }
        r = await call(
            self.client, "create_appointment", {**args, "connection": sandbox.name} if named else args
        )
        sandbox.booked += 1
        console.print(
            f"  booked {r['appointment']['id']} for {first} on {sandbox.name} -> op {r['sync_operation_id']}"
        )
        return r


def start_sandboxes() -> list[Sandbox]:
    """Every registered provider's simulator whose CRM takes bookings, on loopback (a phone
    system's, with no appointments, is left to the call-log walkthrough)."""
    from crm_mcp.connectors.registry import providers

    return [
        Sandbox(p, p.sandbox(0))
        for p in providers()
        if p.sandbox is not None and p.connector is not None and "appointments" in p.capabilities
    ]


def child_env(sandboxes: list[Sandbox], default: Sandbox, db_path: Path) -> dict[str, str]:
    """The server's environment: each sandbox's options as its provider's env vars, fast retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    for sb in sandboxes:
        for option, value in sb.handle.connection_options().items():
            if value is not None:
                env[f"CRM_MCP_{sb.provider.env_prefix}_{option.upper()}"] = str(value)
    env.update(
        {
            "CRM_MCP_DEFAULT_CONNECTION": default.name,
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


async def set_fault(url: str, fault: dict[str, Any] | None) -> None:
    """Switch a simulator's fault on (POST the rule) or off (DELETE) over its control plane."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not is_loopback_host(parts.hostname):
        raise ValueError(f"not a loopback simulator: {url}")
    request = urllib.request.Request(  # noqa: S310 - checked above: our own loopback simulator
        f"{url}/_sandbox/faults",
        data=json.dumps(fault).encode() if fault else None,
        method="POST" if fault else "DELETE",
        headers={"content-type": "application/json"},
    )

    def send() -> None:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - as above
            pass

    await asyncio.to_thread(send)


def appointments_in(sb: Sandbox) -> list[str] | None:
    """The appointment lines the CRM itself holds; None when its handle cannot say."""
    if not isinstance(sb.handle, Summarized):
        return None
    return [line for kind, line in sb.handle.summary() if kind == "appointment"]


def show_crms(sandboxes: list[Sandbox]) -> None:
    for sb in sandboxes:
        if not isinstance(sb.handle, Summarized):
            console.print(f"{sb.provider.title} sandbox: (its simulator gives no summary)")
            continue
        rows = sb.handle.summary()
        table = Table("appointment (as the CRM stores it)", title=f"In the {sb.provider.title} sandbox")
        for kind, line in rows:
            if kind == "appointment":
                table.add_row(line)
        console.print(table)
        console.print("  ".join(f"{kind}: {value}" for kind, value in rows if kind != "appointment"))


def show_dead_letters(dlq: dict[str, Any]) -> None:
    table = Table("entry", "connection", "action", "attempts", "last error", title="Dead-letter queue")
    for e in dlq["entries"]:
        last = e["error_history"][-1] if e["error_history"] else {}
        table.add_row(
            e["id"][:8],
            str(e.get("connection", "")),
            e["action"],
            str(e["attempts"]),
            f"{last.get('error_type', '')} {last.get('status_code') or ''}".strip(),
        )
    console.print(table)


def day(days_ahead: int, hour: int) -> str:
    """A local time `days_ahead` from today (bookings in the past are refused)."""
    return f"{date.today() + timedelta(days=days_ahead)}T{hour:02d}:00:00"


async def tour(t: Tour) -> int:
    d = t.default
    console.rule(f"1. Book three appointments on the default connection ({d.name})")
    booked = [await t.book(start, d, named=False) for start in (day(7, 10), day(7, 11), day(7, 14))]
    await wait_settled(t.client)

    console.rule("2. Confirm one, cancel one, complete one")
    a, b, c = (r["appointment"]["id"] for r in booked)
    await call(t.client, "update_appointment_status", {"appointment_id": a, "action": "confirm"})
    await call(
        t.client,
        "update_appointment_status",
        # the customer asked, so the demo confirms the cancel itself (a real agent asks the user)
        {"appointment_id": b, "action": "cancel", "reason": "customer asked to reschedule", "confirm": True},
    )
    await call(t.client, "update_appointment_status", {"appointment_id": c, "action": "complete"})
    await wait_settled(t.client)

    console.rule("3. One appointment on each CRM, by connection name")
    for i, sb in enumerate(t.sandboxes):
        await t.book(day(9, 9 + i), sb, named=True)
    await wait_settled(t.client)
    show_crms(t.sandboxes)

    console.rule(f"4. {d.provider.title} starts failing")
    await set_fault(d.handle.url, {"kind": "error", "status": 503})
    failing_op = (await t.book(day(8, 9), d, named=False))["sync_operation_id"]
    console.print(f"  booked locally: op {failing_op}; the worker retries with backoff...")
    await wait_settled(t.client, within_s=60)
    show_dead_letters(await call(t.client, "list_dead_letters"))

    console.rule(f"5. Heal {d.provider.title} and retry")
    await set_fault(d.handle.url, None)
    r = await call(t.client, "retry_failed_sync", {"operation_id": failing_op})
    console.print(f"  {r['message']}")
    st = await wait_settled(t.client)
    show_crms(t.sandboxes)

    console.rule("6. Sync status")
    return report(st, t.sandboxes)


def report(st: dict[str, Any], sandboxes: list[Sandbox]) -> int:
    """Print the verdict and the summary line; 0 when every booking reached its CRM."""
    console.print(
        f"verdict: [bold]{st['verdict']}[/]  totals: {st['totals']}  dead letters: {st['dead_letters']}"
    )
    for reason in st.get("reasons", []):
        console.print(f"  why: {reason}")
    for advice in st.get("recommendations", []):
        console.print(f"  next: {advice}")
    counts = {sb.name: appointments_in(sb) for sb in sandboxes}
    reached = all(counts[sb.name] is None or len(counts[sb.name] or []) == sb.booked for sb in sandboxes)
    total = sum(len(lines) for lines in counts.values() if lines is not None)
    per_crm = ", ".join(f"{n}: {len(lines) if lines is not None else '?'}" for n, lines in counts.items())
    dead = st["totals"].get("dead", 0)
    ok = dead == 0 and reached
    console.print(
        f"[bold {'green' if ok else 'red'}]Summary:[/] "
        f"{st['totals'].get('succeeded', 0)} operations delivered, "
        f"{total} appointments in {len(sandboxes)} CRM(s) ({per_crm}), "
        f"1 failure recovered from the dead-letter queue, {dead} still dead."
    )
    return 0 if ok else 1


async def run_demo() -> int:
    from mcp import Client, StdioServerParameters

    sandboxes = start_sandboxes()
    try:
        if not sandboxes:
            console.print("No registered provider has a simulator: nothing to tour.")
            return 1
        default = next((s for s in sandboxes if "appointments" in s.provider.capabilities), sandboxes[0])
        tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-demo-"))
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "crm_mcp", "serve"],
            env=child_env(sandboxes, default, tmp / "demo.db"),
        )
        console.rule("[bold]crm-mcp demo")
        for sb in sandboxes:
            console.print(f"{sb.provider.title} sandbox: {sb.handle.url}   connection: {sb.name}")
            for line in sb.handle.credentials_text():
                console.print(f"  [dim]{line}[/]", highlight=False)
        console.print(f"database: {tmp / 'demo.db'}   default connection: {default.name}")
        async with Client(params, cache=None) as client:
            tools = await client.list_tools()
            console.print(
                f"Connected over stdio: {len(tools.tools)} tools ({', '.join(t.name for t in tools.tools)})"
            )
            return await tour(Tour(client, sandboxes, default))
    finally:
        for sb in sandboxes:
            sb.handle.stop()

"""CRM requests per booking: what a `create_appointment` costs in GoHighLevel quota on the happy path.

A booking's minimum is 4 writes: the contact upsert (carrying its tags and custom fields), the
appointment, the booking note and the reminder task. The reads before those creates guard
against a duplicate after a crash or an ambiguous failure, and are paid only when an earlier
attempt may have written (DESIGN §5).

N bookings go through the real `create_appointment` tool (an in-memory MCP client) and the real
outbox worker to the GoHighLevel simulator over loopback (rate limits lifted, so pacing plays no
part), from a cold start: the connection's custom-field list is read once, inside the measured
run. The simulator counts every request it served. Printed, all measured in this run:

    requests_per_booking   = simulator requests / N                 (target <= 4.4)
    ratio_to_minimum       = simulator requests / writes it served   (the writes are the minimum)

and, as the baseline, the same N bookings delivered with every guard read, as each delivery
paid before (the operations queued as a repair queues them: not `fresh`).

    .venv/bin/python bench/requests_per_booking.py [--bookings 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp import Client

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import build_worker
from crm_mcp.settings import load_settings
from crm_mcp.state import outbox
from crm_mcp.state.models import Appointment
from crm_mcp.tools.appointments import create_command

MINIMUM = 4  # writes per booking: contact upsert, appointment, note, task
TARGET = 4.4
START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
READ_ROUTES_THAT_POST = ("POST /contacts/search",)


@dataclass
class Run:
    label: str
    bookings: int
    routes: Counter[str]
    n429: int
    effects: dict[str, int]
    elapsed_s: float

    @property
    def requests(self) -> int:
        return sum(self.routes.values())

    @property
    def writes(self) -> int:
        return sum(
            n
            for route, n in self.routes.items()
            if route.startswith(WRITE_METHODS) and route not in READ_ROUTES_THAT_POST
        )

    @property
    def per_booking(self) -> float:
        return self.requests / self.bookings

    def row(self) -> str:
        reads = {route: n for route, n in sorted(self.routes.items()) if route.startswith("GET")}
        return (
            f"{self.label:<34} bookings={self.bookings} requests={self.requests} writes={self.writes} "
            f"429s={self.n429} requests/booking={self.per_booking:.2f} "
            f"ratio_to_minimum={self.requests / max(1, self.writes):.3f} elapsed={self.elapsed_s:.1f}s\n"
            f"{'':<34} reads: {reads}"
        )


def settings_for(tmp: Path, url: str, label: str) -> Any:
    return load_settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / f'{label}.db'}",
        state_dir=tmp / "state",
        ghl_token=SANDBOX_TOKEN,
        ghl_location_id=SANDBOX_LOCATION_ID,
        ghl_calendar_id=SANDBOX_CALENDAR_ID,
        ghl_base_url=url,
        worker_concurrency=8,
        log_level="WARNING",
    )


def booking_args(i: int) -> dict[str, Any]:
    return {
        "first_name": "Bench",
        "last_name": str(i),
        "email": f"booking{i}@bench.example.com",
        "start_time": (START + timedelta(minutes=30 * i)).isoformat(),
        "timezone": "America/New_York",
        "title": f"Tour {i}",
        "notes": f"booking {i}",
        "idempotency_key": f"bench-booking-{i}",
        "allow_past": True,  # fixed dates
    }


async def book_through_the_tool(rt: Runtime, n: int) -> None:
    """The happy path: the create_appointment tool, as an MCP client calls it."""
    async with Client(build_server(rt), cache=None) as client:
        for i in range(n):
            result = await client.call_tool("create_appointment", booking_args(i))
            assert not result.is_error, result.content


async def queue_guarded(rt: Runtime, n: int) -> None:
    """The baseline: the same bookings queued as a repair queues them, so every guard read runs."""
    db = await rt.database()
    now = rt.clock()
    for i in range(n):
        start = START + timedelta(minutes=30 * i)
        appt = Appointment(
            id=f"guarded-{i:05d}", connection="gohighlevel", contact_first_name="Bench",
            contact_last_name=str(i), contact_email=f"booking{i}@bench.example.com",
            calendar_id=SANDBOX_CALENDAR_ID, start_time=start, end_time=start + timedelta(minutes=30),
            timezone="America/New_York", title=f"Tour {i}", notes=f"booking {i}", status="confirmed",
            source="bench", created_at=now, updated_at=now, version=1,
        )  # fmt: skip
        async with db.begin_write() as session:
            await outbox.enqueue(
                session, idempotency_key=f"guarded-{i}", connection="gohighlevel",
                action="appointment.create", payload=create_command(appt).payload(),
                entity_type="appointment", entity_id=appt.id, now=now,
            )  # fmt: skip
            session.add(appt)


async def run(sim: GHLSandbox, url: str, tmp: Path, label: str, n: int, guarded: bool) -> Run:
    sim.reset()
    rt = Runtime(settings_for(tmp, url, label))
    try:
        await rt.warm_up()
        await (queue_guarded(rt, n) if guarded else book_through_the_tool(rt, n))
        worker = await build_worker(rt)
        assert sim.stats["total"] == 0, "queuing a booking must not call the CRM"
        t0 = time.perf_counter()
        delivered = await worker.drain()
        elapsed = time.perf_counter() - t0
        assert delivered == n, f"delivered {delivered} of {n}"
    finally:
        await rt.aclose()
    stats, snap = sim.stats, sim.snapshot()
    effects = {kind: len(snap[kind]) for kind in ("contacts", "appointments", "notes", "tasks")}
    return Run(label, n, Counter(stats["by_route"]), stats["by_status"].get("429", 0), effects, elapsed)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bookings", type=int, default=50)
    args = parser.parse_args(argv)
    n = args.bookings
    sim, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=1_000_000, daily_limit=100_000_000))
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-requests-"))
    try:
        print(f"GoHighLevel sandbox (limits lifted); {n} bookings, cold start; minimum {MINIMUM} writes each")
        guarded = await run(sim, server.url, tmp, "baseline: every guard read", n, guarded=True)
        print(guarded.row(), flush=True)
        first = await run(sim, server.url, tmp, "create_appointment (first delivery)", n, guarded=False)
        print(first.row(), flush=True)
    finally:
        server.stop()
    exact = all(runs.effects == dict.fromkeys(runs.effects, n) for runs in (guarded, first))
    print(
        f"requests_per_booking = {first.per_booking:.2f}  (target <= {TARGET}; "
        f"baseline with every guard read {guarded.per_booking:.2f})"
    )
    print(
        f"ratio_to_minimum = {first.requests / max(1, first.writes):.3f}  "
        f"(minimum measured in this run: {first.writes} writes = {first.writes / n:.2f} per booking; "
        f"baseline {guarded.requests / max(1, guarded.writes):.3f})"
    )
    ok = first.per_booking <= TARGET and first.n429 == 0 and first.writes == MINIMUM * n and exact
    print(f"each effect once: {exact} {first.effects}")
    print("target (<= 4.4 requests per booking, 4 writes each, 0 429s, each effect once):",
          "met" if ok else "NOT met")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

"""Fairness across tenants: one connection's backlog must not hold back the others' deliveries.

An agency runs many locations (connections) on one deployment, sharing its workers. Here one
"noisy" connection has a backlog of NOISY operations queued at the start, while QUIET other
connections each get a trickle of one booking every TRICKLE seconds (spread over the
interval). The real worker and `appointment.create` handler deliver everything to the
GoHighLevel simulator (its own process, rate limits lifted, LATENCY per request), every
connection configured as its own tenant.

Measured per quiet operation: delivery latency (enqueued -> success recorded). Three runs in the
same process, each on a fresh SQLite database:
  1. baseline: the trickle alone, no backlog;
  2. fair: the trickle beside the backlog, with the round-robin claims of `outbox.claim_due`;
  3. unfair: the same, claiming oldest first (`fair=False`, how claims worked before).
Printed as ratios of the quiet tenants' p95 latency to the baseline's (target for fair: <= 2).

`python bench/tenants.py` (or `make bench`). Takes about a minute; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from outbox import LATENCY, RemoteSim
from sqlalchemy import select

from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment, SyncLog, SyncOperation
from crm_mcp.tools.appointments import create_command

START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def booking(connection: str, i: int, now: datetime) -> Appointment:
    start = START + timedelta(minutes=30 * i)
    return Appointment(
        id=f"{connection}-{i:06d}",
        connection=connection,
        contact_first_name="Tenant",
        contact_last_name=str(i),
        contact_email=f"{connection}.{i}@example.com",
        contact_phone=None,
        calendar_id=SANDBOX_CALENDAR_ID,
        start_time=start,
        end_time=start + timedelta(minutes=30),
        timezone="UTC",
        title=f"{connection} {i}",
        notes=None,
        status="confirmed",
        source="bench",
        created_at=now,
        updated_at=now,
        version=1,
    )


async def enqueue(db: Database, connection: str, first: int, n: int, now: datetime) -> None:
    items = []
    for i in range(first, first + n):
        payload = create_command(booking(connection, i, now)).payload()
        items.append(
            outbox.NewOperation(
                idempotency_key=f"{connection}-{i}",
                connection=connection,
                action="appointment.create",
                payload=payload,
                entity_type="appointment",
                entity_id=payload["appointment_id"],
                fresh=True,  # as create_appointment queues it
            )
        )
    async with db.begin_write() as session:
        await outbox.enqueue_many(session, items, now=now)


def write_config(path: Path, crm_url: str, names: list[str]) -> None:
    tables = [
        f'[connections.{name}]\nprovider = "gohighlevel"\ntoken = "{SANDBOX_TOKEN}"\n'
        f'location_id = "{SANDBOX_LOCATION_ID}"\ncalendar_id = "{SANDBOX_CALENDAR_ID}"\n'
        f'base_url = "{crm_url}"\n'
        for name in names
    ]
    path.write_text("\n".join(tables))


async def run(
    tmp: Path,
    crm_url: str,
    label: str,
    *,
    noisy: int,
    quiet: int,
    rounds: int,
    trickle: float,
    fair: bool,
    c: int,
    cap: int | None = None,
) -> list[float]:
    """One run; returns the quiet operations' delivery latencies in seconds."""
    from crm_mcp.runtime import Runtime
    from crm_mcp.server.run import build_worker
    from crm_mcp.settings import load_settings

    names = ["noisy"] + [f"quiet{q:02d}" for q in range(quiet)]
    config = tmp / f"{label}.toml"
    write_config(config, crm_url, names)
    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / f'{label}.db'}",
        state_dir=tmp / "state",
        config_file=config,
        worker_concurrency=c,
        worker_per_connection=cap,
        poll_interval_seconds=0.02,
    )
    rt = Runtime(settings)
    real_claim = outbox.claim_due
    if not fair:
        outbox.claim_due = functools.partial(real_claim, fair=False)  # type: ignore[assignment]
    try:
        await rt.warm_up()
        db = await rt.database()
        worker = await build_worker(rt)
        for name in names:  # warm every connector (HTTP client, field ids) outside the measurement
            await enqueue(db, name, 900_000, 1, datetime.now(UTC))
        await worker.drain()
        if noisy:
            await enqueue(db, "noisy", 0, noisy, datetime.now(UTC))
        stop = asyncio.Event()
        running = asyncio.ensure_future(worker.run_forever(stop))
        # The trickle: one booking per quiet tenant every `trickle` s, the tenants spread evenly
        # over each interval (independent businesses do not book in lockstep).
        for r in range(rounds):
            for q in range(quiet):
                await enqueue(db, f"quiet{q:02d}", r, 1, datetime.now(UTC))
                await asyncio.sleep(trickle / quiet)
        expected = quiet * rounds
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            async with db.sessions() as s:
                done = (
                    await s.execute(
                        select(SyncOperation.id).where(
                            SyncOperation.connection != "noisy",
                            SyncOperation.status == "succeeded",
                            SyncOperation.entity_id.not_like("%-900000"),
                        )
                    )
                ).all()
            if len(done) >= expected:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await running
        async with db.sessions() as s:
            rows = (
                await s.execute(
                    select(SyncOperation.created_at, SyncLog.finished_at)
                    .join(SyncLog, SyncLog.operation_id == SyncOperation.id)
                    .where(
                        SyncOperation.connection != "noisy",
                        SyncLog.outcome == "success",
                        SyncOperation.entity_id.not_like("%-900000"),
                    )
                )
            ).all()
    finally:
        outbox.claim_due = real_claim  # type: ignore[assignment]
        await rt.aclose()
    latencies = [(finished - created).total_seconds() for created, finished in rows]
    assert len(latencies) == expected, f"{label}: {len(latencies)} of {expected} quiet operations delivered"
    return latencies


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--noisy", type=int, default=2000, help="operations in the noisy tenant's backlog")
    parser.add_argument("--quiet", type=int, default=20, help="quiet tenants")
    parser.add_argument("--rounds", type=int, default=5, help="bookings per quiet tenant")
    parser.add_argument(
        "--trickle", type=float, default=1.0, help="seconds between a quiet tenant's bookings"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--per-connection",
        type=int,
        default=None,
        help="also run fair claims with CRM_MCP_WORKER_PER_CONNECTION=N (a cap on one tenant's slots)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-tenants-"))
    common: dict[str, Any] = dict(
        quiet=args.quiet, rounds=args.rounds, trickle=args.trickle, c=args.concurrency
    )
    sim = RemoteSim()
    try:
        base = await run(tmp, sim.url, "baseline", noisy=0, fair=True, **common)
        fair = await run(tmp, sim.url, "fair", noisy=args.noisy, fair=True, **common)
        unfair = await run(tmp, sim.url, "unfair", noisy=args.noisy, fair=False, **common)
        capped = None
        if args.per_connection:
            capped = await run(
                tmp, sim.url, "capped", noisy=args.noisy, fair=True, cap=args.per_connection, **common
            )
    finally:
        sim.stop()
    print(
        f"tenants: 1 noisy tenant with {args.noisy} operations queued, {args.quiet} quiet tenants with "
        f"1 booking per {args.trickle:g} s each ({args.rounds} each), C={args.concurrency}, "
        f"simulator latency {LATENCY * 1000:.0f} ms/request"
    )
    for name, values in (("no backlog", base), ("backlog, fair", fair), ("backlog, oldest first", unfair)):
        print(
            f"quiet tenants' delivery latency, {name}: p50 {statistics.median(values) * 1000:.0f} ms, "
            f"p95 {p95(values) * 1000:.0f} ms"
        )
    if capped is not None:
        print(
            f"quiet tenants' delivery latency, backlog, fair, at most {args.per_connection} per tenant "
            f"in flight: p50 {statistics.median(capped) * 1000:.0f} ms, p95 {p95(capped) * 1000:.0f} ms"
        )
        print(
            f"tenants_capped_p95_ratio = {p95(capped) / p95(base):.2f}  (fair claims and "
            f"CRM_MCP_WORKER_PER_CONNECTION={args.per_connection}, p95 vs no backlog; target <= 2)"
        )
    print(
        f"tenants_fair_p95_ratio = {p95(fair) / p95(base):.2f}  (fair claims, p95 vs no backlog; target <= 2)"
    )
    print(
        f"tenants_unfair_p95_ratio = {p95(unfair) / p95(base):.2f}  (oldest-first claims, p95 vs no backlog; "
        "how claims worked before)"
    )


if __name__ == "__main__":
    asyncio.run(main())

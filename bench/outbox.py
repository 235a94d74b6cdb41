"""Outbox throughput on SQLite: enqueues per second, and end-to-end delivery against the GHL sandbox.

1. Enqueue: `outbox.enqueue` of appointment.create operations (the tool's payload shape) into a
   fresh SQLite file: `enqueue`, one transaction per operation (unbatched), and
   `enqueue_many`, 500 per transaction (batched). Target: >= 5,000 enqueues/s batched.
2. Delivery: the real worker and `appointment.create` handler deliver to the GoHighLevel simulator
   (rate limits lifted) answering every request after LATENCY. With C operations in flight, a CRM
   that answers in LATENCY serves at most C / LATENCY requests/s; the engine is "not the limit" if
   the measured request rate is >= 0.9 x that ideal. Printed as a ratio per C, measured in this run
   while the worker is fully loaded (20% to 80% of the operations done: more than C still queued),
   with the whole run's ratio beside it (that one includes the ramp-down of a finite batch).
   The simulator's LATENCY is its whole service time (see GHLSandboxConfig.latency_s).
3. Engine CPU per CRM request against the bare connector sending the same requests (target <= 1.3x):
   after an untimed run of each and the throughput run, PAIRS engine runs alternate with PAIRS
   bare runs of the same size, with no probe running, and the means are compared (each pair's
   ratio is printed too: these machines' speed drifts by tens of percent within a minute, so a
   single pair says little).
4. The pause of a full garbage collection after those runs (CPU ms, the event loop stalls for
   it): with the start-up heap frozen, as `Runtime.warm_up` leaves it, and walking that heap too.

The simulator runs in a child process of its own, so that it does not share this process's GIL
(and event loop) with the worker being measured: the bench measures the engine, not the CRM stub.

`python bench/outbox.py` (or `make bench`). Takes about two minutes; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ChildServer

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandboxConfig,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment
from crm_mcp.tools.appointments import create_command

LATENCY = 0.050
PAIRS = 3  # measured engine runs, each followed by a bare-connector run of the same bookings
START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def booking(i: int, tag: str, now: datetime, connection: str = "gohighlevel") -> Appointment:
    """The `i`-th local booking of a run (`tag` keeps runs apart), half an hour after the last."""
    start = START + timedelta(minutes=30 * i)
    return Appointment(
        id=f"{tag}-{i:06d}",
        connection=connection,
        contact_first_name="Bench",
        contact_last_name=str(i),
        contact_email=f"{tag}{i}@example.com",
        contact_phone=None,
        calendar_id=SANDBOX_CALENDAR_ID,
        start_time=start,
        end_time=start + timedelta(minutes=30),
        timezone="UTC",
        title=f"Bench {i}",
        notes=None,
        status="confirmed",
        source="bench",
        created_at=now,
        updated_at=now,
        version=1,
    )


async def enqueue_ops(db: Database, tag: str, n: int, batch: int, *, fresh: bool = False) -> float:
    """Enqueue n operations: one `enqueue` per transaction (batch=1) or `enqueue_many` of `batch`
    per transaction; returns enqueues per second. `fresh`: queued as create_appointment queues
    them (nothing of them can be in the CRM yet, so a first delivery makes no guard reads)."""
    now = datetime.now(UTC)
    items = [
        outbox.NewOperation(
            idempotency_key=f"{tag}-{i}",
            connection="gohighlevel",
            action="appointment.create",
            payload=(payload := create_command(booking(i, tag, now)).payload()),
            entity_type="appointment",
            entity_id=payload["appointment_id"],
            fresh=fresh,
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for first in range(0, n, batch):
        async with db.begin_write() as session:
            if batch == 1:
                await outbox.enqueue(session, **vars(items[first]), now=now)
            else:
                await outbox.enqueue_many(session, items[first : first + batch], now=now)
    return n / (time.perf_counter() - t0)


async def bench_enqueue(tmp: Path, n: int) -> tuple[float, float]:
    db = Database(f"sqlite+aiosqlite:///{tmp / 'enqueue.db'}")
    await db.upgrade()
    try:
        await enqueue_ops(db, "warm", 200, 100)
        unbatched = await enqueue_ops(db, "one", n // 5, 1)
        batched = await enqueue_ops(db, "many", n, 500)
    finally:
        await db.dispose()
    return unbatched, batched


class RemoteSim(ChildServer):
    """The GHL simulator in a child process; `total()` reads its request counter over HTTP."""

    def __init__(self) -> None:
        super().__init__([__file__, "--serve-sim", "{port}"], "/_sandbox/stats")

    def total(self) -> int:
        return int(self.get("/_sandbox/stats")["total"])


def serve_sim(port: int) -> None:
    """Child process: serve the GHL simulator (rate limits lifted, LATENCY per request) until killed."""
    config = GHLSandboxConfig(burst_max=1_000_000_000, daily_limit=1_000_000_000, latency_s=LATENCY)
    start_ghl_sandbox(config, port=port)
    while True:
        time.sleep(3600)


async def bench_delivery(
    tmp: Path, crm_url: str, sim: RemoteSim, concurrency: int, ops: int
) -> dict[str, float]:
    from crm_mcp.runtime import Runtime
    from crm_mcp.server.run import build_worker
    from crm_mcp.settings import load_settings

    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / f'deliver-{concurrency}.db'}",
        state_dir=tmp / "state",
        ghl_token=SANDBOX_TOKEN,
        ghl_location_id=SANDBOX_LOCATION_ID,
        ghl_calendar_id=SANDBOX_CALENDAR_ID,
        ghl_base_url=crm_url,
        worker_concurrency=concurrency,
    )
    rt = Runtime(settings)
    try:
        await rt.warm_up()
        db = await rt.database()
        worker = await build_worker(rt)
        # Warm both paths alike (HTTP connections, custom field ids, compiled statements, the
        # interpreter's caches) with a run of the same size: the CPU figures are a long-running
        # worker's, not a cold start's, and the baseline gets no warm-up the engine did not.
        await enqueue_ops(db, f"w{concurrency}-", ops, 500, fresh=True)
        await worker.drain()
        await bare_client(rt, sim, concurrency, ops)
        # Throughput: one run, watched by a probe (steady_window) that wakes every 5 ms.
        await enqueue_ops(db, f"t{concurrency}-", ops, 500, fresh=True)
        before = sim.total()
        t0 = time.perf_counter()
        window = asyncio.ensure_future(steady_window(worker, sim, ops))
        delivered = await worker.drain()  # the continuous path run_forever uses
        elapsed, requests = time.perf_counter() - t0, sim.total() - before
        steady_req_s = await window
        assert delivered == ops, f"delivered {delivered} of {ops}"
        client_req_s, _ = await bare_client(rt, sim, concurrency, ops)
        # CPU: engine and bare runs alternate, unwatched, so a drift in the machine's speed hits both.
        engine_cpu: list[float] = []
        bare_cpu: list[float] = []
        for pair in range(PAIRS):
            await enqueue_ops(db, f"c{concurrency}-{pair}-", ops, 500, fresh=True)
            sent, cpu0 = sim.total(), time.process_time()
            assert await worker.drain() == ops
            engine_cpu.append((time.process_time() - cpu0) * 1000 / (sim.total() - sent))
            bare_cpu.append((await bare_client(rt, sim, concurrency, ops))[1])
        frozen_ms, whole_ms = full_collection_ms()
    finally:
        await rt.aclose()
    ideal = concurrency / LATENCY
    return {
        "ops_s": ops / elapsed,
        "req_s": requests / elapsed,
        "req_per_op": requests / ops,
        "ideal_req_s": ideal,
        "ratio": steady_req_s / ideal,
        "whole_run_ratio": requests / elapsed / ideal,
        "client_ratio": client_req_s / ideal,
        "cpu_ms_per_req": sum(engine_cpu) / PAIRS,
        "client_cpu_ms_per_req": sum(bare_cpu) / PAIRS,
        "pair_ratios": [e / b for e, b in zip(engine_cpu, bare_cpu, strict=True)],
        "gc_frozen_ms": frozen_ms,
        "gc_whole_ms": whole_ms,
    }


def full_collection_ms() -> tuple[float, float]:
    """CPU ms of a full garbage collection, as the worker has it (the start-up heap frozen by
    `Runtime.warm_up`), and with that heap walked too (what every full collection cost before)."""
    assert gc.get_freeze_count(), "Runtime.warm_up froze nothing"
    gc.collect()
    t = time.process_time()
    gc.collect()
    frozen = time.process_time() - t
    gc.unfreeze()
    t = time.process_time()
    gc.collect()
    whole = time.process_time() - t
    gc.freeze()
    return frozen * 1000, whole * 1000


async def steady_window(worker: Any, sim: RemoteSim, ops: int) -> float:
    """CRM requests/s while the worker is fully loaded: from 20% to 80% of the operations done.

    Then more than C operations are still queued, so every slot is busy; the ramp-down at the end
    of a finite batch (slots idle because the queue ran dry) is drain time, not throughput."""
    first, last = worker.processed + ops // 5, worker.processed + ops * 4 // 5
    marks: list[tuple[float, int]] = []
    for goal in (first, last):
        while worker.processed < goal:  # noqa: ASYNC110 (a probe polling a counter, 5 ms resolution)
            await asyncio.sleep(0.005)
        total = await asyncio.to_thread(sim.total)
        marks.append((time.perf_counter(), total))
    (t0, n0), (t1, n1) = marks
    return (n1 - n0) / (t1 - t0)


async def bare_client(rt: Any, sim: RemoteSim, concurrency: int, ops: int) -> tuple[float, float]:
    """The baseline: the connector alone sending the same requests, with no outbox, database or
    worker. `concurrency` tasks book `ops` appointments between them, each with the calls the
    appointment.create handler makes on a first delivery (contact upsert with tags and custom
    fields, appointment, note, task: the same connector methods and payload shapes). Returns its
    CRM requests/s and CPU ms per request (this process, all threads)."""
    from crm_mcp.connectors.base import Appointment as CRMAppointment
    from crm_mcp.connectors.base import Contact, Note, Task

    connector: Any = rt.connector(None)  # every capability the handler uses: one GoHighLevel connector
    now = datetime.now(UTC)
    bookings = iter(range(ops))

    async def client() -> None:
        for i in bookings:
            start = START + timedelta(minutes=30 * i)
            contact = Contact(
                first_name="Bare",
                last_name=str(i),
                email=f"bare{now.timestamp():.0f}-{i}@example.com",
                tags=["crm-mcp", "appointment-booked"],
                custom_fields={
                    "appointment_status": "confirmed",
                    "next_appointment_date": start.date().isoformat(),
                },
            )
            saved, _ = await connector.upsert_contact(contact)
            event = await connector.create_appointment(
                CRMAppointment(
                    calendar_id=SANDBOX_CALENDAR_ID,
                    contact_id=saved.id,
                    start_time=start,
                    end_time=start + timedelta(minutes=30),
                    title=f"Bench {i}",
                    status="confirmed",
                )
            )
            assert event.id
            await connector.add_note(
                Note(contact_id=saved.id, body=f"Appointment booked: Bench {i}\n\n[bare-{i}]")
            )
            await connector.create_task(
                Task(contact_id=saved.id, title=f"Reminder: Bench {i}", body="Remind.", due_date=start)
            )

    before = sim.total()
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    requests = sim.total() - before
    return requests / elapsed, cpu * 1000 / requests


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--enqueues", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument(
        "--rounds", type=int, default=10, help="operations per delivery run, as a multiple of C (>= 5)"
    )
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5 (the measured window needs more than C queued)")
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-outbox-"))

    unbatched, batched = await bench_enqueue(tmp, args.enqueues)
    print(f"enqueue (SQLite): unbatched {unbatched:,.0f}/s, batched (500 per transaction) {batched:,.0f}/s")
    print(f"enqueue_batched_vs_unbatched = {batched / unbatched:.1f}x")
    print(f"enqueue_batched_ratio = {batched / 5000:.2f}  (batched / 5,000 per s target; >= 1 passes)")

    sim = RemoteSim()
    try:
        for c in args.concurrency:
            r = await bench_delivery(tmp, sim.url, sim, c, c * args.rounds)
            print(
                f"delivery C={c}: {r['ops_s']:.1f} ops/s ({r['req_per_op']:.1f} CRM requests each), "
                f"{r['req_s']:.1f} CRM requests/s vs ideal C/{LATENCY * 1000:.0f} ms "
                f"= {r['ideal_req_s']:.0f}/s"
            )
            print(
                f"delivery_ratio_c{c} = {r['ratio']:.2f}  (target >= 0.9; requests/s while every slot "
                f"is busy, 20-80% of the run; the whole run incl. its ramp-down: {r['whole_run_ratio']:.2f})"
            )
            print(
                f"bare_client_ratio_c{c} = {r['client_ratio']:.2f}  (reference: the connector alone "
                "sending the same bookings' requests at the same C, no outbox or database)"
            )
            pairs = ", ".join(f"{x:.2f}" for x in r["pair_ratios"])
            print(
                f"cpu_ms_per_request_c{c}: engine {r['cpu_ms_per_req']:.2f}, "
                f"bare connector {r['client_cpu_ms_per_req']:.2f}  (this process, all threads; "
                f"mean of {PAIRS} alternating runs after a warm-up run of each; per run: {pairs})"
            )
            print(
                f"gc_full_collection_c{c}: {r['gc_frozen_ms']:.1f} ms with the start-up heap frozen, "
                f"{r['gc_whole_ms']:.1f} ms walking it too (the event loop stalls for a collection)"
            )
    finally:
        sim.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-sim":
        serve_sim(int(sys.argv[2]))
    else:
        asyncio.run(main())

"""Delivery under faults: nothing lost, nothing doubled, and the breaker opens and recovers.

N operations (default 2,000 notes, each with a unique marker) go through the real outbox worker
(SQLite outbox, leases, retries, dead letters) and the real connector stack into the GoHighLevel
simulator (20 requests / 2 s) while ~20 % of requests fail with 503s or time out, plus one full
outage in the middle (every request 503 for a few seconds) that must trip the circuit breaker.
Handlers look before they create only when an earlier attempt may have landed
(`ctx.read_before_create`: a timeout or a 5xx, never a first attempt), as the booking handler does.

It checks, and prints: every operation ended succeeded or dead (with its reason), no marker was
delivered twice, the breaker went open -> half-open -> closed, quota use and 429s; and, in the same
run, the same numbers for a fault-free baseline of the same load (--baseline-ops) to compare.

    .venv/bin/python bench/faults.py [--ops 2000] [--fault-rate 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from crm_mcp.connectors.base import Contact, Note
from crm_mcp.connectors.breaker import CircuitBreaker
from crm_mcp.providers.gohighlevel.connector import GoHighLevelConnector
from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation
from crm_mcp.sync.context import HandlerContext
from crm_mcp.sync.worker import OutboxWorker, utcnow

BURST, INTERVAL_MS = 20, 2000
CONTACTS = 40
OUTAGE_S = 12.0
BREAKER_WINDOW_S = 10.0  # a connection sending ~10 req/s judges health over the last 10 s


class Chaos:
    """Re-rolls the fault every 0.5 s (503 or timeout at `rate`); one full outage when told."""

    def __init__(self, sim: GHLSandbox, rate: float, seed: int = 7) -> None:
        self.sim, self.rate, self.rng = sim, rate, random.Random(seed)
        self.outage_until = 0.0
        self.outages = 0

    def outage(self) -> None:
        self.outages += 1
        self.outage_until = time.monotonic() + OUTAGE_S
        self.sim.faults.set("error", status=503)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if time.monotonic() >= self.outage_until and self.rate > 0:
                if self.rng.random() < 0.5:
                    self.sim.faults.set("error", status=503, probability=self.rate)
                else:
                    self.sim.faults.set("timeout", delay_s=1.0, probability=self.rate)
            await asyncio.sleep(0.5)
        self.sim.faults.clear()


async def counts(db: Database) -> Counter[str]:
    async with db.sessions() as s:
        rows = await s.execute(select(SyncOperation.status, func.count()).group_by(SyncOperation.status))
        return Counter({status: n for status, n in rows.all()})


async def run(ops: int, fault_rate: float, outage: bool, label: str) -> dict[str, Any]:
    sim, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=BURST, burst_interval_ms=INTERVAL_MS, seed=3))
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-faults-"))
    db = Database(f"sqlite+aiosqlite:///{tmp / 'outbox.db'}")
    await db.upgrade()
    conn = GoHighLevelConnector(
        "bench", token=SANDBOX_TOKEN, location_id=SANDBOX_LOCATION_ID, base_url=server.url,
        timeout_s=0.5, max_attempts=3, max_retry_time_s=5.0,
        breaker=CircuitBreaker("gohighlevel:bench", window_s=BREAKER_WINDOW_S),
    )  # fmt: skip
    states: list[str] = []
    delivered = 0
    try:
        contact_ids = []
        for i in range(CONTACTS):
            c, _ = await conn.upsert_contact(Contact(email=f"faults-{i}@bench.example.com"))
            assert c.id
            contact_ids.append(c.id)
        setup_requests = sim.stats["total"]  # the contacts above are not part of the measured load
        now = utcnow()
        async with db.begin_write() as session:
            for i in range(ops):
                payload = {"contact_id": contact_ids[i % CONTACTS], "marker": f"op-{i:05d}", "body": "bench"}
                await outbox.enqueue(
                    session, idempotency_key=f"faults-{i}", connection="bench", action="bench.note",
                    payload=payload, entity_type="note", entity_id=str(i), now=now, fresh=True,
                )  # fmt: skip

        async def deliver(op: SyncOperation, ctx: HandlerContext) -> dict[str, Any]:
            nonlocal delivered
            p = op.payload
            if ctx.read_before_create:  # an earlier attempt may have landed: look before creating again
                for note in await conn.list_notes(p["contact_id"]):
                    if f"[{p['marker']}]" in note.body:
                        delivered += 1
                        return {"note_id": note.id, "found": True}
            note = await conn.add_note(Note(contact_id=p["contact_id"], body=f"{p['body']} [{p['marker']}]"))
            delivered += 1
            return {"note_id": note.id}

        worker = OutboxWorker(
            db, {"bench.note": deliver}, concurrency=16, lease=timedelta(seconds=30), poll_interval=0.05,
            backoff_base=0.5, backoff_cap=5.0, max_attempts=8,
        )  # fmt: skip
        stop = asyncio.Event()
        chaos = Chaos(sim, fault_rate)
        tasks = [asyncio.create_task(worker.run_forever(stop)), asyncio.create_task(chaos.run(stop))]
        start = time.perf_counter()
        while True:
            await asyncio.sleep(0.1)
            state = conn.snapshot()["breaker"]["state"]
            if not states or states[-1] != state:
                states.append(state)
            if outage and not chaos.outages and delivered >= ops * 0.3:
                chaos.outage()
            tally = await counts(db)
            if tally["succeeded"] + tally["dead"] == ops:
                break
        elapsed = time.perf_counter() - start
        stop.set()
        await asyncio.gather(*tasks)
        notes = Counter(n["body"].rsplit("[", 1)[-1].rstrip("]") for n in sim.snapshot()["notes"])
        async with db.sessions() as session:
            dead = await outbox.list_dead_letters(session, limit=ops)
            done = select(SyncOperation).where(SyncOperation.status == "succeeded")
            succeeded = list((await session.execute(done)).scalars())
            guarded = select(func.count()).where(SyncOperation.read_before_create)
            looked = (await session.execute(guarded.select_from(SyncOperation))).scalar_one()
        succeeded_markers = {o.payload["marker"] for o in succeeded}
        found = sum(1 for o in succeeded if (o.result or {}).get("found"))
        dead_markers = {d.operation_id for d in dead}
        stats = sim.stats
        requests = stats["total"] - setup_requests
        accepted = requests - stats["by_status"].get("429", 0)
        return {
            "label": label,
            "ops": ops,
            "succeeded": len(succeeded_markers),
            "dead": len(dead_markers),
            "reasons": Counter(d.reason.split(":")[0][:60] for d in dead).most_common(3),
            "dead_without_reason": sum(1 for d in dead if not d.reason),
            "duplicates": sum(n - 1 for n in notes.values() if n > 1),
            "lost": sum(1 for m in succeeded_markers if notes[m] == 0),
            "looked": looked,
            "found": found,
            "requests": requests,
            "faulted": stats.get("faults_injected", 0),
            "n429": stats["by_status"].get("429", 0),
            "elapsed_s": elapsed,
            "quota_use": accepted / elapsed / (BURST / (INTERVAL_MS / 1000)),
            "breaker": states,
            "trips": conn.snapshot()["breaker"]["trips"],
        }
    finally:
        await conn.aclose()
        await db.dispose()
        server.stop()


def show(r: dict[str, Any]) -> None:
    print(
        f"{r['label']:<28} ops={r['ops']} succeeded={r['succeeded']} dead={r['dead']} "
        f"duplicates={r['duplicates']} lost={r['lost']} requests={r['requests']} faulted={r['faulted']} "
        f"429s={r['n429']} elapsed={r['elapsed_s']:.1f}s quota_use={r['quota_use']:.3f} "
        f"breaker={'->'.join(r['breaker'])} trips={r['trips']} looked_first={r['looked']} "
        f"found_by_looking={r['found']}",
        flush=True,
    )
    if r["reasons"]:
        print(f"{'':<28} dead-letter reasons: {r['reasons']}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--baseline-ops", type=int, default=200, help="fault-free run of the same load")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the retry warnings would drown the figures
    print(f"GoHighLevel sandbox {BURST} req / {INTERVAL_MS / 1000:g} s; outbox worker x16; "
          f"{args.fault_rate:.0%} 503s/timeouts + one {OUTAGE_S:g} s outage")  # fmt: skip
    base = await run(args.baseline_ops, 0.0, False, "baseline (no faults)")
    show(base)
    faulty = await run(args.ops, args.fault_rate, True, f"faults ({args.fault_rate:.0%} + outage)")
    show(faulty)
    terminal = faulty["succeeded"] + faulty["dead"] == faulty["ops"]
    recovered = "open" in faulty["breaker"] and faulty["breaker"][-1] == "closed"
    ok = terminal and not faulty["duplicates"] and not faulty["lost"] and recovered
    ok = ok and not faulty["dead_without_reason"]
    print(
        f"every op terminal={terminal} duplicates={faulty['duplicates']} lost={faulty['lost']} "
        f"breaker opened and recovered={recovered} | quota_use faults/baseline="
        f"{faulty['quota_use'] / base['quota_use']:.2f}"
    )
    print("result:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

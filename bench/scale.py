"""Scale-out on PostgreSQL + Redis: delivery throughput of 1, 2 and 4 `crm-mcp worker` processes.

Each run gets a fresh PostgreSQL database (on 127.0.0.1:5432, trust auth, dropped afterwards)
and the GoHighLevel simulator in a child process, answering every request after LATENCY. Real
`python -m crm_mcp worker` processes (CRM_MCP_WORKER_CONCURRENCY=C each, the shared rate-limit
and breaker state in Redis via CRM_MCP_REDIS_URL) are started and wait, idle, until all have
entered their delivery loop; each worker count first delivers 2 x C bookings per worker untimed
(connections, caches, compiled statements), then OPS `appointment.create` bookings are queued at
once and the clock runs until the last one has succeeded. Every run starts with the bench's Redis
database cleared of shared limiter and breaker state (what an earlier run learned would bind it).

1. Throughput, limits lifted: ops/s for 1, 2 and 4 workers, each count run ROUNDS times in
   alternation (this machine's speed drifts), the means printed as ratios to 1 worker's (issue
   target: 2 workers >= 1.7x one, where one is CPU-bound), with the CPU milliseconds per booking
   of the workers, the simulator and PostgreSQL (from /proc) and how busy the whole machine was
   (/proc/stat): on a 2-core machine they all share two cores, so a run that keeps the machine
   busy X% against 1 worker's Y% can be at most X / Y faster, whatever the workers do.
2. One strict limit shared through Redis: 4 workers against a simulator that allows STRICT
   requests per second; the 429s the simulator sent (target 0) and the quota use (requests/s
   over the limit while work was queued; target >= 0.9).
3. Engine overhead: CPU per CRM request of the in-process worker over the bare connector
   sending the same number of requests (bench/outbox.py's measurement) at C = 4, 16, 32
   (issue target <= 1.3). `--no-overhead` skips it.

`python bench/scale.py` (or `make bench`). Needs PostgreSQL and Redis; about three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ChildServer
from outbox import booking

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandboxConfig,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.tools.appointments import create_command

LATENCY = 0.050
PG = os.environ.get("CRM_MCP_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("CRM_MCP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ROOT = Path(__file__).resolve().parent.parent


class Sim(ChildServer):
    """The GHL simulator in a child process (`burst` requests per `interval_ms`)."""

    def __init__(self, burst: int, interval_ms: int) -> None:
        super().__init__([__file__, "--serve-sim", "{port}", str(burst), str(interval_ms)], "/_sandbox/stats")

    def stats(self) -> dict[str, Any]:
        return dict(self.get("/_sandbox/stats"))


def serve_sim(port: int, burst: int, interval_ms: int) -> None:
    config = GHLSandboxConfig(
        burst_max=burst, burst_interval_ms=interval_ms, daily_limit=1_000_000_000, latency_s=LATENCY
    )
    start_ghl_sandbox(config, port=port)
    while True:
        time.sleep(3600)


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc; 0 elsewhere)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, over all cores (Linux /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields) - idle) / TICK, sum(fields) / TICK


def postgres_pids() -> list[int]:
    """Every local PostgreSQL process (server and backends); empty when it is not on this host."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG.replace("+asyncpg", ""), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def forget_shared_state() -> None:
    """Drop the shared limiter and breaker state earlier runs left in the bench's Redis database:
    each run starts from the provider's documented limits, not from what the last one learned
    (the strict run's 40 requests/s would otherwise cap the next invocation's first run)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match="crm-mcp:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def scalar(db: Database, sql: str) -> int:
    from sqlalchemy import text

    async with db.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


def spawn(tmp: Path, env: dict[str, str], i: int) -> subprocess.Popen[bytes]:
    with open(tmp / f"worker-{i}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "crm_mcp", "worker"],
            env=env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def deliver(db: Database, tag: str, ops: int) -> None:
    """Queue `ops` bookings at once (as create_appointment queues them) and wait until they succeeded."""
    now = datetime.now(UTC)
    items = []
    for i in range(ops):
        payload = create_command(booking(i, tag, now)).payload()
        items.append(
            outbox.NewOperation(
                idempotency_key=f"{tag}-{i}",
                connection="gohighlevel",
                action="appointment.create",
                payload=payload,
                entity_type="appointment",
                entity_id=payload["appointment_id"],
                fresh=True,
            )
        )
    succeeded = "SELECT COUNT(*) FROM sync_operations WHERE status = 'succeeded'"
    goal = await scalar(db, succeeded) + ops
    async with db.begin_write() as session:
        await outbox.enqueue_many(session, items, now=now)
    deadline = time.monotonic() + 600
    while (done := await scalar(db, succeeded)) < goal:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done - goal + ops} of {ops} delivered in 600 s")
        await asyncio.sleep(0.05)


async def run(
    sim: Sim, workers: int, concurrency: int, ops: int, tag: str, *, warm: int = 0
) -> dict[str, float]:
    """One run: `workers` fresh worker processes on a fresh database deliver `ops` bookings (after
    `warm` untimed ones); throughput, 429s and CPU by process."""
    name = f"crm_mcp_scale_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = PG.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-scale-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        CRM_MCP_DATABASE_URL=url,
        CRM_MCP_REDIS_URL=REDIS,
        CRM_MCP_STATE_DIR=str(tmp / "state"),
        CRM_MCP_GHL_TOKEN=SANDBOX_TOKEN,
        CRM_MCP_GHL_LOCATION_ID=SANDBOX_LOCATION_ID,
        CRM_MCP_GHL_CALENDAR_ID=SANDBOX_CALENDAR_ID,
        CRM_MCP_GHL_BASE_URL=sim.url,
        CRM_MCP_WORKER_CONCURRENCY=str(concurrency),
        CRM_MCP_POLL_INTERVAL_SECONDS="0.02",
        CRM_MCP_CALLS_INTERVAL="0",
        CRM_MCP_PREFLIGHT_INTERVAL_SECONDS="0",
        CRM_MCP_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await db.upgrade()
        await forget_shared_state()
        procs.extend(spawn(tmp, env, i) for i in range(workers))
        deadline = time.monotonic() + 120
        while await scalar(db, "SELECT COUNT(*) FROM worker_heartbeats") < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"workers did not start; see {tmp}")
            await asyncio.sleep(0.1)
        if warm:  # every worker's first bookings: connections, caches, compiled statements
            await deliver(db, f"{tag}-warm", warm)
        before = sim.stats()
        pg_pids = postgres_pids()
        worker_pids = [p.pid for p in procs]
        cpu0 = (cpu_seconds(worker_pids), cpu_seconds([sim.proc.pid]), cpu_seconds(pg_pids))
        busy0 = machine_busy()
        t0 = time.perf_counter()
        await deliver(db, tag, ops)
        elapsed = time.perf_counter() - t0
        after = sim.stats()
        cpu1 = (cpu_seconds(worker_pids), cpu_seconds([sim.proc.pid]), cpu_seconds(pg_pids))
        busy1 = machine_busy()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        await db.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    requests = after["total"] - before["total"]
    return {
        "ops_s": ops / elapsed,
        "req_s": requests / elapsed,
        "rate_limited": float(after.get("rate_limited", 0) - before.get("rate_limited", 0)),
        "elapsed": elapsed,
        # CPU milliseconds per booking, by process: where a 2-core machine's time goes
        "cpu_worker": (cpu1[0] - cpu0[0]) * 1000 / ops,
        "cpu_sim": (cpu1[1] - cpu0[1]) * 1000 / ops,
        "cpu_pg": (cpu1[2] - cpu0[2]) * 1000 / ops,
        # the share of the machine's CPU time (all cores) that was busy during the run
        "busy": (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1e-9),
    }


async def overhead(concurrencies: list[int]) -> list[tuple[int, float]]:
    """Engine CPU per CRM request over the bare connector's, with bench/outbox.py's measurement."""
    from outbox import RemoteSim, bench_delivery

    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-scale-overhead-"))
    sim = RemoteSim()
    out = []
    try:
        for c in concurrencies:
            r = await bench_delivery(tmp, sim.url, sim, c, c * 10)
            out.append((c, r["cpu_ms_per_req"] / r["client_cpu_ms_per_req"]))
    finally:
        sim.stop()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=600, help="bookings per throughput run")
    parser.add_argument("--concurrency", type=int, default=32, help="CRM_MCP_WORKER_CONCURRENCY per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--strict", type=int, default=40, help="requests/s the strict simulator allows")
    parser.add_argument("--strict-ops", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each worker count, alternating")
    parser.add_argument("--no-overhead", action="store_true")
    args = parser.parse_args()

    sim = Sim(burst=1_000_000_000, interval_ms=10_000)
    runs: dict[int, list[dict[str, float]]] = {k: [] for k in args.workers}
    try:
        # The worker counts take turns, round after round: these machines' speed drifts by tens of
        # percent within a minute, and a drift should hit every count alike.
        for rnd in range(args.rounds):
            for k in args.workers:
                warm = 2 * args.concurrency * k
                r = await run(sim, k, args.concurrency, args.ops, f"scale{k}-{rnd}", warm=warm)
                runs[k].append(r)
                print(
                    f"scale: {k} worker(s) x C={args.concurrency} on PostgreSQL + Redis: "
                    f"{r['ops_s']:.1f} ops/s, {r['req_s']:.0f} CRM requests/s "
                    f"({args.ops} bookings after {warm} untimed, {r['elapsed']:.1f} s); CPU ms per "
                    f"booking: workers {r['cpu_worker']:.1f}, simulator {r['cpu_sim']:.1f}, "
                    f"PostgreSQL {r['cpu_pg']:.1f}; machine {r['busy']:.0%} busy"
                )
    finally:
        sim.stop()
    mean = {k: sum(r["ops_s"] for r in rs) / len(rs) for k, rs in runs.items()}
    busy = {k: sum(r["busy"] for r in rs) / len(rs) for k, rs in runs.items()}
    first = args.workers[0]
    for k in args.workers[1:]:
        print(
            f"scale_ratio_{k}_workers = {mean[k] / mean[first]:.2f}  (mean ops/s of {args.rounds} runs vs "
            f"{first} worker's; target for 2: >= 1.7; machine {busy[k]:.0%} busy against {busy[first]:.0%}, "
            f"so at most {min(k / first, busy[k] / busy[first]):.2f} from CPU alone)"
        )

    strict = Sim(burst=args.strict, interval_ms=1000)
    try:
        r = await run(strict, 4, 8, args.strict_ops, "strict")
    finally:
        strict.stop()
    print(
        f"strict limit {args.strict}/s shared through Redis by 4 workers: {r['req_s']:.1f} requests/s, "
        f"{r['rate_limited']:.0f} answered 429"
    )
    print(f"scale_strict_429s = {r['rate_limited']:.0f}  (target 0)")
    print(
        f"scale_strict_quota_use = {r['req_s'] / args.strict:.2f}  (requests/s over the limit; target >= 0.9)"
    )

    if not args.no_overhead:
        for c, ratio in await overhead([4, 16, 32]):
            print(
                f"engine_overhead_c{c} = {ratio:.2f}  "
                "(engine CPU per CRM request / bare connector's; target <= 1.3)"
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-sim":
        serve_sim(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        asyncio.run(main())

"""Fairness across tenants: one connection's backlog must not hold back the others' deliveries.

An agency runs many locations (connections) on one deployment, sharing its workers. Here one
"noisy" connection has a backlog of NOISY operations queued (5,000 by default), while QUIET other
connections (49: 50 in all) each get a trickle of one booking every TRICKLE seconds (the tenants
spread evenly over the interval). The real worker and `appointment.create` handler deliver
everything to GoHighLevel simulators, one per connection, each a location with its own rate limit
(scaled down: BURST requests per INTERVAL, LATENCY per request), all served by one uvicorn
server in a child process (`/t/<connection>/...` is that connection's simulator; each connection
in the TOML config has its own base_url).

Runs in the same process, each on a fresh SQLite database and fresh simulators:
  1. baseline: the trickle alone, no backlog;
  2. fair: the trickle beside the backlog, round-robin claims (`outbox.claim_due`), each
     connection capped at what its rate limit keeps busy (the default,
     `crm_mcp.server.run.connection_caps`);
  3. capped: the same with CRM_MCP_WORKER_PER_CONNECTION=N (`--per-connection`; 0 skips it);
  4. unfair: the same as 2, claiming oldest first without caps (`fair=False`, how claims worked before;
     `--no-unfair` skips it). Its quiet bookings wait behind the whole backlog, so it stops
     TAIL seconds after the trickle and counts what is still undelivered at its age then.
The backlog is not drained: a run stops when the quiet tenants' bookings are delivered (or TAIL
seconds after the trickle ended), and checks that the noisy tenant still has work queued.

Printed, per run: the quiet tenants' p50/p95 delivery latency (enqueued -> success recorded);
the p95 ratio to the baseline (target <= 2); the noisy tenant's quota use while it has work
(requests its simulator accepted per second over the measured window / its limit; target >= 0.9);
the quiet tenants' quota figures (their demand is far below their quota: see the output); 429s.
The measured window opens RAMP seconds after the worker started on the backlog (so the noisy
tenant runs at its steady rate) and closes when the last quiet booking is delivered.

`python bench/tenants.py` (or `make bench`). Takes about a minute and a half; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import ChildServer
from outbox import booking
from sqlalchemy import func, select

from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncLog, SyncOperation
from crm_mcp.tools.appointments import create_command

WARM = 900_000  # index of each connection's warm-up booking (not measured)


def location_id(name: str) -> str:
    """A location id of GoHighLevel's shape (20 characters), one per connection."""
    return f"BenchLoc{name:0>12}"[:20]


async def enqueue(db: Database, connection: str, first: int, n: int, now: datetime) -> None:
    items = []
    for i in range(first, first + n):
        payload = create_command(booking(i, connection, now, connection)).payload()
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
        for chunk in range(0, len(items), 500):
            await outbox.enqueue_many(session, items[chunk : chunk + 500], now=now)


# -- the simulators: one GoHighLevel location per connection, one server ---------------------------


@dataclass
class Limits:
    burst: int
    interval_ms: int
    latency_s: float

    @property
    def rate(self) -> float:
        """Requests per second a location allows."""
        return self.burst / (self.interval_ms / 1000)


class TenantSims:
    """ASGI app: `/t/<name>/<path>` is `<path>` on connection <name>'s own simulator (its own
    limiter, data and counters); `/_bench/stats` returns every simulator's counters at once;
    `/_bench/reset` replaces all simulators with fresh ones."""

    def __init__(self, names: list[str], limits: Limits) -> None:
        self.names, self.limits = names, limits
        self.sims: dict[str, GHLSandbox] = {}
        self.reset()

    def reset(self) -> None:
        self.sims = {
            name: GHLSandbox(
                GHLSandboxConfig(
                    location_id=location_id(name),
                    burst_max=self.limits.burst,
                    burst_interval_ms=self.limits.interval_ms,
                    daily_limit=1_000_000_000,
                    latency_s=self.limits.latency_s,
                )
            )
            for name in self.names
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope["path"]
        if path.startswith("/t/"):
            name, _, rest = path[3:].partition("/")
            sim = self.sims.get(name)
            if sim is not None:
                rest = "/" + rest
                await sim.app({**scope, "path": rest, "raw_path": rest.encode()}, receive, send)
                return
        if path == "/_bench/stats":
            body = {
                name: {k: v for k, v in sim.stats.items() if k != "by_route"}
                for name, sim in self.sims.items()
            }
            return await self._json(send, 200, body)
        if path == "/_bench/reset":
            self.reset()
            return await self._json(send, 200, {})
        await self._json(send, 404, {"message": f"no simulator at {path}"})

    @staticmethod
    async def _json(send: Any, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def serve_sims(port: int, names: list[str], limits: Limits) -> None:
    """Child process: serve every connection's simulator until killed."""
    from crm_mcp.sandbox.runner import SandboxServer

    SandboxServer(TenantSims(names, limits), port=port).start()
    while True:
        time.sleep(3600)


class RemoteSims(ChildServer):
    """`TenantSims` in a child process of its own, so that it does not share this process's GIL
    and event loop with the worker being measured."""

    def __init__(self, names: list[str], limits: Limits) -> None:
        spec = json.dumps({"port": "{port}", "names": names, "limits": vars(limits)})
        super().__init__([__file__, "--serve-sims", spec], "/_bench/stats")

    def base_url(self, name: str) -> str:
        return f"{self.url}/t/{name}"

    def stats(self) -> dict[str, dict[str, Any]]:
        return dict(self.get("/_bench/stats"))

    def reset(self) -> None:
        self.get("/_bench/reset")


def accepted(stats: dict[str, Any]) -> int:
    """Requests the CRM served (a 429 is refused, not served)."""
    return int(stats["total"]) - int(stats["by_status"].get("429", 0))


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Result:
    label: str
    latencies: list[float]  # quiet bookings' delivery latency; undelivered ones at their age at stop
    undelivered: int
    window_s: float
    noisy_req_s: float  # requests the noisy tenant's simulator accepted per second in the window
    noisy_done: int  # noisy operations delivered in the window
    noisy_left: int  # noisy operations still queued (pending or in flight) at the end
    quiet_busy_req_s: float  # the same while a quiet tenant had a booking waiting or in flight
    quiet_req_per_op: float
    quiet_limiter_waits: int  # times a quiet tenant's own rate limiter made a request wait
    n429: int  # 429s from any simulator during the whole run (warm-up included)


def write_config(path: Path, sims: RemoteSims, names: list[str]) -> None:
    tables = [
        f'[connections.{name}]\nprovider = "gohighlevel"\ntoken = "{SANDBOX_TOKEN}"\n'
        f'location_id = "{location_id(name)}"\ncalendar_id = "{SANDBOX_CALENDAR_ID}"\n'
        f'base_url = "{sims.base_url(name)}"\n'
        for name in names
    ]
    path.write_text("\n".join(tables))


def limiter_waits(connector: Any) -> int:
    """How often the connector's own rate limiter made a request wait (`ResilientClient.limiter`)."""
    return int(connector.client.limiter.waits)


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] spans."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


async def run(
    tmp: Path,
    sims: RemoteSims,
    limits: Limits,
    label: str,
    *,
    noisy: int,
    quiet: int,
    rounds: int,
    trickle: float,
    fair: bool,
    c: int,
    cap: int | None,
    ramp: float,
    tail: float,
) -> Result:
    from crm_mcp.runtime import Runtime
    from crm_mcp.server.run import build_worker
    from crm_mcp.settings import load_settings

    names = ["noisy"] + [f"quiet{q:02d}" for q in range(quiet)]
    sims.reset()
    config = tmp / f"{label}.toml"
    write_config(config, sims, names)
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
    if not fair:  # how claims worked before: oldest first, no per-connection caps

        async def oldest_first(*args: Any, **kwargs: Any) -> Any:
            return await real_claim(*args, **{**kwargs, "fair": False, "per_connection": None})

        outbox.claim_due = oldest_first  # type: ignore[assignment]
    quiet_ops = (SyncOperation.connection != "noisy") & SyncOperation.entity_id.not_like(f"%-{WARM}")

    async def count(*where: Any) -> int:
        async with db.sessions() as s:
            return int(
                (await s.execute(select(func.count()).select_from(SyncOperation).where(*where))).scalar_one()
            )

    try:
        await rt.warm_up()
        db = await rt.database()
        worker = await build_worker(rt)
        # warm every connector (HTTP client, field ids; its limiter learns the location's limit
        # from the answers) outside the measurement, then let every burst window empty
        for name in names:
            await enqueue(db, name, WARM, 1, datetime.now(UTC))
        await worker.drain()
        await asyncio.sleep(limits.interval_ms / 1000)
        stop = asyncio.Event()
        running = asyncio.ensure_future(worker.run_forever(stop))
        if noisy:
            await enqueue(db, "noisy", 0, noisy, datetime.now(UTC))
            await asyncio.sleep(ramp)  # the noisy tenant reaches its steady rate
        noisy_done = SyncOperation.connection == "noisy", SyncOperation.status == "succeeded"
        done0 = await count(*noisy_done)
        before, t0 = sims.stats(), time.monotonic()
        # The trickle: one booking per quiet tenant every `trickle` s, the tenants spread evenly
        # over each interval (independent businesses do not book in lockstep), on a fixed schedule.
        step = trickle / quiet
        for k in range(rounds * quiet):
            r, q = divmod(k, quiet)
            await asyncio.sleep(max(0.0, t0 + k * step - time.monotonic()))
            await enqueue(db, f"quiet{q:02d}", r, 1, datetime.now(UTC))
        expected = quiet * rounds
        deadline = time.monotonic() + tail
        while time.monotonic() < deadline:
            if await count(quiet_ops, SyncOperation.status == "succeeded") >= expected:
                break
            await asyncio.sleep(0.05)
        after, t1 = sims.stats(), time.monotonic()
        stopped_at = datetime.now(UTC)
        noisy_left = await count(
            SyncOperation.connection == "noisy", SyncOperation.status.in_(("pending", "in_flight"))
        )
        noisy_done_n = await count(*noisy_done) - done0
        stop.set()
        await running  # what the worker had claimed is still delivered
        final = sims.stats()
        async with db.sessions() as s:
            rows = (
                await s.execute(
                    select(SyncOperation.connection, SyncOperation.created_at, SyncLog.finished_at)
                    .outerjoin(
                        SyncLog, (SyncLog.operation_id == SyncOperation.id) & (SyncLog.outcome == "success")
                    )
                    .where(quiet_ops)
                )
            ).all()
        waits = sum(limiter_waits(c) for name, c in rt.cached_connectors().items() if name != "noisy")
    finally:
        outbox.claim_due = real_claim  # type: ignore[assignment]
        await rt.aclose()
    assert len(rows) == expected, f"{label}: {len(rows)} of {expected} quiet operations queued"
    # A booking delivered after the window closed (the stop drains what is in flight) counts at
    # its age when the window closed: a lower bound, as for those never delivered.
    latencies: list[float] = []
    spans: dict[str, list[tuple[float, float]]] = {}
    undelivered = 0
    for conn, created, finished in rows:
        if finished is None or finished > stopped_at:
            undelivered += 1
            finished = stopped_at
        latencies.append((finished - created).total_seconds())
        spans.setdefault(conn, []).append((created.timestamp(), finished.timestamp()))
    window = t1 - t0
    quiet_names = names[1:]
    quiet_requests = sum(accepted(after[n]) - accepted(before[n]) for n in quiet_names)
    busy = sum(busy_seconds(spans.get(n, [])) for n in quiet_names)
    return Result(
        label=label,
        latencies=latencies,
        undelivered=undelivered,
        window_s=window,
        noisy_req_s=(accepted(after["noisy"]) - accepted(before["noisy"])) / window,
        noisy_done=noisy_done_n,
        noisy_left=noisy_left,
        quiet_busy_req_s=quiet_requests / busy if busy else 0.0,
        quiet_req_per_op=quiet_requests / expected,
        quiet_limiter_waits=waits,
        n429=sum(int(s["by_status"].get("429", 0)) for s in final.values()),
    )


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def describe(res: Result, base: Result | None, limits: Limits, name: str) -> str:
    v = res.latencies
    line = (
        f"{name}: quiet p50 {statistics.median(v) * 1000:.0f} ms, p95 {p95(v) * 1000:.0f} ms"
        + (f" (ratio {p95(v) / p95(base.latencies):.2f})" if base is not None else "")
        + f"; window {res.window_s:.1f} s; "
    )
    if res.undelivered:
        line += f"{res.undelivered} of {len(v)} quiet bookings NOT delivered (counted at their age then); "
    if res.noisy_done or res.noisy_left:
        line += (
            f"noisy: {res.noisy_req_s:.1f} req/s = {res.noisy_req_s / limits.rate:.2f} of its limit, "
            f"{res.noisy_done} delivered, {res.noisy_left} still queued at the end; "
        )
    return line + f"429s {res.n429}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--noisy", type=int, default=5000, help="operations in the noisy tenant's backlog")
    parser.add_argument("--quiet", type=int, default=49, help="quiet tenants")
    parser.add_argument("--rounds", type=int, default=10, help="bookings per quiet tenant")
    parser.add_argument(
        "--trickle", type=float, default=1.0, help="seconds between a quiet tenant's bookings"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--per-connection",
        type=int,
        default=4,
        help="also run fair claims with CRM_MCP_WORKER_PER_CONNECTION=N (0: skip that run)",
    )
    parser.add_argument("--no-unfair", action="store_true", help="skip the oldest-first run")
    parser.add_argument("--burst", type=int, default=40, help="each location's limit: requests per interval")
    parser.add_argument("--interval-ms", type=int, default=1000, help="each location's limit interval")
    parser.add_argument("--latency", type=float, default=0.050, help="simulator latency per request, s")
    parser.add_argument("--ramp", type=float, default=1.0, help="s between the worker's start and the window")
    parser.add_argument("--tail", type=float, default=10.0, help="s to wait for deliveries after the trickle")
    parser.add_argument("--serve-sims", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sims:
        spec = json.loads(args.serve_sims)
        serve_sims(int(spec["port"]), spec["names"], Limits(**spec["limits"]))
        return
    limits = Limits(args.burst, args.interval_ms, args.latency)
    names = ["noisy"] + [f"quiet{q:02d}" for q in range(args.quiet)]
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-tenants-"))
    common: dict[str, Any] = dict(
        quiet=args.quiet,
        rounds=args.rounds,
        trickle=args.trickle,
        c=args.concurrency,
        ramp=args.ramp,
        tail=args.tail,
    )
    cap = args.per_connection or None
    sims = RemoteSims(names, limits)
    try:
        base = await run(tmp, sims, limits, "baseline", noisy=0, fair=True, cap=None, **common)
        fair = await run(tmp, sims, limits, "fair", noisy=args.noisy, fair=True, cap=None, **common)
        capped = None
        if cap:
            capped = await run(tmp, sims, limits, "capped", noisy=args.noisy, fair=True, cap=cap, **common)
        unfair = None
        if not args.no_unfair:
            unfair = await run(tmp, sims, limits, "unfair", noisy=args.noisy, fair=False, cap=None, **common)
    finally:
        sims.stop()

    report(args, limits, base, fair, capped, unfair)


def report(
    args: argparse.Namespace,
    limits: Limits,
    base: Result,
    fair: Result,
    capped: Result | None,
    unfair: Result | None,
) -> None:
    cap = args.per_connection
    rate, per_op, ms = limits.rate, base.quiet_req_per_op, limits.latency_s * 1000
    print(
        f"tenants: {1 + args.quiet} connections, each its own GoHighLevel location limited to "
        f"{limits.burst} requests per {limits.interval_ms / 1000:g} s ({rate:g} req/s), {ms:.0f} ms per "
        f"request; 1 noisy tenant with {args.noisy} operations queued, {args.quiet} quiet tenants with "
        f"1 booking per {args.trickle:g} s each ({args.rounds} each, {per_op:.1f} requests per booking); "
        f"one worker, C={args.concurrency}"
    )
    print(describe(base, None, limits, "no backlog"))
    print(describe(fair, base, limits, "backlog, fair claims, limit-derived caps"))
    if capped is not None:
        print(describe(capped, base, limits, f"backlog, fair claims, at most {cap} per connection in flight"))
    if unfair is not None:
        print(describe(unfair, base, limits, "backlog, oldest first"))
    runs = [r for r in (fair, capped, unfair) if r is not None]
    for r in runs:
        if r.noisy_left == 0:
            print(f"WARNING: {r.label}: the noisy backlog drained during the run: use a larger --noisy")
    booked = args.quiet / args.trickle
    held = statistics.median(base.latencies)
    print(
        f"slots: the trickle alone keeps about {booked * held:.0f} of the C={args.concurrency} slots "
        f"busy ({booked:g} bookings/s x {held * 1000:.0f} ms each); the noisy tenant needs about "
        f"{rate * limits.latency_s:.0f} requests in flight to use its limit"
    )

    def each(values: Mapping[str, float], fmt: str) -> str:
        return ", ".join(f"{format(v, fmt)} ({label})" for label, v in values.items())

    busy = {"no backlog": base.quiet_busy_req_s / rate} | {r.label: r.quiet_busy_req_s / rate for r in runs}
    waits = {"no backlog": base.quiet_limiter_waits} | {r.label: r.quiet_limiter_waits for r in runs}
    print(
        f"quiet tenants' quota: a trickle tenant never has more work than its quota (demand {per_op:.1f} "
        f"requests per {args.trickle:g} s = {per_op / args.trickle / rate:.2f} of its limit), so it cannot "
        f"reach 0.9 of it; while one had a booking queued or in flight it was served at {each(busy, '.2f')} "
        f"of its limit (a booking's requests go one after another: at most 1 / {ms:.0f} ms = "
        f"{1 / limits.latency_s / rate:.2f} of the limit); times a quiet tenant's own limiter made a request "
        f"wait: {each(waits, 'd')}"
    )
    ratio = p95(fair.latencies) / p95(base.latencies)
    print(
        f"tenants_fair_p95_ratio = {ratio:.2f}  "
        "(fair claims, limit-derived caps, p95 vs no backlog; target <= 2)"
    )
    print(
        f"tenants_noisy_quota_use = {fair.noisy_req_s / rate:.2f}  (fair claims, limit-derived caps, "
        "the noisy tenant's accepted req/s / its limit while it has work; target >= 0.9)"
    )
    if capped is not None:
        ratio = p95(capped.latencies) / p95(base.latencies)
        print(
            f"tenants_capped_p95_ratio = {ratio:.2f}  (fair claims, CRM_MCP_WORKER_PER_CONNECTION={cap}, "
            "p95 vs no backlog; target <= 2)"
        )
        print(
            f"tenants_capped_noisy_quota_use = {capped.noisy_req_s / rate:.2f}  (fair claims, "
            f"CRM_MCP_WORKER_PER_CONNECTION={cap}; target >= 0.9)"
        )
    if unfair is not None:
        bound = ", at least: undelivered ones at their age" if unfair.undelivered else ""
        ratio = p95(unfair.latencies) / p95(base.latencies)
        print(
            f"tenants_unfair_p95_ratio = {ratio:.2f}  (oldest-first claims, p95 vs no backlog{bound}; "
            "how claims worked before)"
        )
    print(f"tenants_429s = {sum(r.n429 for r in (base, *runs))}  (all runs; target 0)")
    lost = sum(r.undelivered for r in (base, fair, capped) if r is not None)
    print(
        f"tenants_undelivered = {lost}  (quiet bookings not delivered by the end of the baseline, "
        "fair or capped run; target 0)"
    )


if __name__ == "__main__":
    asyncio.run(main())

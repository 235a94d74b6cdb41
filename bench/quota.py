"""How much of a CRM's rate limit do we actually use, and how often do we hit the wall?

Sustained delivery of N operations (default 2,000 contact upserts, one request each) against the
GoHighLevel simulator with its burst limit scaled to 20 requests / 2 s, through the real connector
stack (limiter, breaker, retries) over loopback. The same load is then sent by a naive client
(httpx + tenacity retrying 429s with exponential backoff, no limiter), in the same run, and both
are printed:

    quota_use = achieved request rate / allowed rate (burst_max / interval)

Target for crm-mcp: quota_use >= 0.95 with 0 responses 429.

    .venv/bin/python bench/quota.py [--ops 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx2
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_random_exponential

from crm_mcp.connectors.base import Contact
from crm_mcp.providers.gohighlevel.connector import GoHighLevelConnector
from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandboxConfig,
)

BURST, INTERVAL_MS = 20, 2000


@dataclass
class Result:
    name: str
    ops: int
    delivered: int
    requests: int
    n429: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Requests the CRM accepted per second (429s are refused, not served)."""
        return (self.requests - self.n429) / self.elapsed_s if self.elapsed_s else 0.0

    def quota_use(self, allowed_rate: float) -> float:
        return self.rate / allowed_rate

    def row(self, allowed_rate: float) -> str:
        return (
            f"{self.name:<22} ops={self.ops:<5} delivered={self.delivered:<5} requests={self.requests:<6} "
            f"429s={self.n429:<5} elapsed={self.elapsed_s:7.1f}s rate={self.rate:6.2f}/s "
            f"quota_use={self.quota_use(allowed_rate):.3f}"
        )


def contact(i: int, tag: str) -> Contact:
    return Contact(first_name="Bench", last_name=str(i), email=f"{tag}-{i}@bench.example.com")


async def drive(ops: int, concurrency: int, one: Any) -> float:
    """Run `one(i)` for i in range(ops) on `concurrency` tasks; return the elapsed wall time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(ops):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def run_crm_mcp(ops: int, concurrency: int) -> Result:
    sim, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=BURST, burst_interval_ms=INTERVAL_MS))
    conn = GoHighLevelConnector(
        "bench", token=SANDBOX_TOKEN, location_id=SANDBOX_LOCATION_ID, base_url=server.url
    )
    try:

        async def one(i: int) -> None:
            await conn.upsert_contact(contact(i, "ours"))

        elapsed = await drive(ops, concurrency, one)
        stats = sim.stats
        return Result(
            "crm-mcp (limiter)",
            ops,
            len(sim.snapshot()["contacts"]),
            stats["total"],
            stats["by_status"].get("429", 0),
            elapsed,
        )
    finally:
        await conn.aclose()
        server.stop()


async def run_naive(ops: int, concurrency: int) -> Result:
    sim, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=BURST, burst_interval_ms=INTERVAL_MS))
    headers = {"Authorization": f"Bearer {SANDBOX_TOKEN}", "Version": "2021-07-28"}
    client = httpx2.AsyncClient(base_url=server.url, headers=headers, timeout=15)
    try:

        async def send(i: int) -> httpx2.Response:
            c = contact(i, "naive")
            wire = {"locationId": SANDBOX_LOCATION_ID, "firstName": c.first_name, "lastName": c.last_name,
                    "email": c.email}  # fmt: skip
            return await client.post("/contacts/upsert", json=wire)

        retrying = AsyncRetrying(
            retry=retry_if_result(lambda r: r.status_code == 429),
            wait=wait_random_exponential(multiplier=0.1, max=4),
            stop=stop_after_attempt(30),
            # a naive client that gives up reports the operation lost instead of crashing the run
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )

        async def one(i: int) -> None:
            await retrying(send, i)

        elapsed = await drive(ops, concurrency, one)
        stats = sim.stats
        return Result(
            "naive (tenacity on 429)",
            ops,
            len(sim.snapshot()["contacts"]),
            stats["total"],
            stats["by_status"].get("429", 0),
            elapsed,
        )
    finally:
        await client.aclose()
        server.stop()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    allowed = BURST / (INTERVAL_MS / 1000)
    print(f"GoHighLevel sandbox, burst limit scaled to {BURST} per {INTERVAL_MS / 1000:g} s "
          f"(allowed {allowed:g} req/s); {args.ops} operations, concurrency {args.concurrency}")  # fmt: skip
    ours = await run_crm_mcp(args.ops, args.concurrency)
    print(ours.row(allowed), flush=True)
    naive = await run_naive(args.ops, args.concurrency)
    print(naive.row(allowed), flush=True)
    print(
        f"quota_use={ours.quota_use(allowed):.3f} 429s={ours.n429} | "
        f"naive quota_use={naive.quota_use(allowed):.3f} 429s={naive.n429} | "
        f"requests per delivered op: crm-mcp {ours.requests / max(1, ours.delivered):.2f}, "
        f"naive {naive.requests / max(1, naive.delivered):.2f}"
    )
    ok = ours.quota_use(allowed) >= 0.95 and ours.n429 == 0 and ours.delivered == args.ops
    print("target (quota_use >= 0.95, 0 429s, all delivered):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

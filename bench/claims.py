"""What a fair claim costs beside a backlog: `outbox.claim_due` with 49 quiet connections holding
one due operation each and one connection with BACKLOG queued, at backlogs of 50 and 5,000.

A claim reads only each connection's oldest few due operations (one range of the claim index per
connection), so its cost should not grow with the backlog: printed as the ratio of the time per
claim beside 5,000 to the time beside 50, measured in the same run (1.0: flat). Each
claim takes 4 operations; the claimed ones stay in flight (a worker would be delivering them).
SQLite always; PostgreSQL too when it answers on 127.0.0.1:5432 (`CRM_MCP_BENCH_PG_URL`).

`python bench/claims.py`. About 20 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm_mcp.state import outbox
from crm_mcp.state.db import Database

PG = os.environ.get("CRM_MCP_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _op(key: str, connection: str) -> outbox.NewOperation:
    return outbox.NewOperation(
        idempotency_key=key,
        connection=connection,
        action="appointment.create",
        payload={"key": key},
        entity_type="appointment",
        entity_id=key,
    )


async def per_claim_ms(url: str, backlog: int, quiet: int, claims: int) -> float:
    db = Database(url)
    await db.upgrade()
    try:
        now = datetime.now(UTC)
        items = [_op(f"noisy-{i}", "noisy") for i in range(backlog)]
        items += [_op(f"quiet-{q}", f"quiet{q:02d}") for q in range(quiet)]
        async with db.begin_write() as session:
            await outbox.enqueue_many(session, items, now=now - timedelta(seconds=1))
        lease = timedelta(minutes=5)
        await outbox.claim_due(db, worker_id="warm", limit=4, lease=lease, now=now)
        t0 = time.perf_counter()
        for _ in range(claims):
            await outbox.claim_due(db, worker_id="bench", limit=4, lease=lease, now=now)
        return (time.perf_counter() - t0) * 1000 / claims
    finally:
        await db.dispose()


async def postgres_url() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG.replace("+asyncpg", ""), timeout=3)
    except (TimeoutError, OSError, ImportError):
        return None
    name = f"crm_mcp_claims_{uuid.uuid4().hex[:10]}"
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG.rsplit("/", 1)[0] + f"/{name}"


async def drop(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG.replace("+asyncpg", ""), timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quiet", type=int, default=49)
    parser.add_argument("--claims", type=int, default=150)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-claims-"))
    backends = [("SQLite", lambda tag: f"sqlite+aiosqlite:///{tmp / f'{tag}.db'}")]
    for name, make in backends:
        small = await per_claim_ms(make("small"), 50, args.quiet, args.claims)
        large = await per_claim_ms(make("large"), 5000, args.quiet, args.claims)
        report(name, small, large, args.quiet)
    pg = await postgres_url()
    if pg is None:
        print("PostgreSQL: not reachable, skipped")
        return
    try:
        small = await per_claim_ms(pg, 50, args.quiet, args.claims)
    finally:
        await drop(pg)
    pg = await postgres_url()
    assert pg is not None
    try:
        large = await per_claim_ms(pg, 5000, args.quiet, args.claims)
    finally:
        await drop(pg)
    report("PostgreSQL", small, large, args.quiet)


def report(backend: str, small: float, large: float, quiet: int) -> None:
    print(
        f"{backend}: a claim of 4 beside {quiet} quiet connections: {small:.2f} ms with 50 queued on "
        f"one connection, {large:.2f} ms with 5,000"
    )
    print(
        f"claim_cost_ratio_{backend.lower()} = {large / small:.2f}  "
        "(5,000 queued vs 50; 1.0: the backlog costs a claim nothing)"
    )


if __name__ == "__main__":
    asyncio.run(main())

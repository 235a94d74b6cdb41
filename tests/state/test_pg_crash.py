"""Three `crm-mcp worker` processes on one PostgreSQL database, one of them SIGKILLed again and
again mid-delivery: every one of 500 bookings reaches the CRM exactly once.

The PostgreSQL twin of tests/sync/test_crash.py (whose helpers it reuses): the bookings are
queued `fresh` as `create_appointment` queues them, the workers claim side by side with
FOR UPDATE SKIP LOCKED, and the killed worker's leases (1 s) expire for the others (or its next
incarnation) to take over with read-before-create. The simulator holds exactly one contact,
appointment, note and task per booking at the end, and the outbox is all `succeeded`.

Runs in a throwaway database on 127.0.0.1:5432 (dropped afterwards). Skipped locally when
PostgreSQL is down; fails on CI (CI=true), where it must run.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import GHLSandboxConfig
from tests.conftest import POSTGRES_URL, require_service
from tests.sync.test_crash import _queue_bookings, _worker_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OPERATIONS = 500
WORKERS = 3
MIN_KILLS = 3
LATENCY_S = 0.03  # per CRM request: the workers spend their lives waiting on the CRM
KILL_PHASE_S = 60.0  # then the three finish the queue undisturbed
DEADLINE_S = 110.0


def _admin_url() -> str:
    return POSTGRES_URL.replace("+asyncpg", "")


async def _sql(database: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    url = _admin_url().rsplit("/", 1)[0] + f"/{database}"
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def sql(database: str, query: str, *args: Any) -> list[Any]:
    return asyncio.run(_sql(database, query, *args))


def outbox_totals(database: str) -> Counter[str]:
    rows = sql(database, "SELECT status, COUNT(*) FROM sync_operations GROUP BY status")
    return Counter({r[0]: r[1] for r in rows})


def wait_for_leases(database: str, proc: subprocess.Popen[bytes], until: float) -> bool:
    """Wait until `proc` holds leases; False when it cannot any more (no operation is pending,
    it exited) or `until` (a monotonic time) passed."""
    while time.monotonic() < until and proc.poll() is None:
        if sql(database, "SELECT 1 FROM sync_operations WHERE lease_owner LIKE $1", f"%:{proc.pid}:%"):
            return True
        if not outbox_totals(database)["pending"]:
            return False
        time.sleep(0.02)
    return False


class Pool:
    """`python -m crm_mcp worker` processes by slot; never leaves one behind."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.spawned = 0

    def spawn(self, slot: int) -> subprocess.Popen[bytes]:
        self.spawned += 1
        with open(self.tmp / f"worker-{self.spawned}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "crm_mcp", "worker"],
                cwd=self.tmp,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[slot] = proc
        return proc

    def kill(self, slot: int) -> bool:
        proc = self.procs.pop(slot)
        alive = proc.poll() is None
        if alive:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return alive and proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.tmp.glob("worker-*.log"))[-3:]
        )


def test_three_postgres_workers_one_killed_repeatedly_deliver_exactly_once(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("CRM_MCP_CRASH_SEED", "20261203")))
    name = f"crm_mcp_crash_{uuid.uuid4().hex[:10]}"
    sql("test", f'CREATE DATABASE "{name}"')
    db_url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    sim, server = start_ghl_sandbox(
        GHLSandboxConfig(burst_max=1_000_000, daily_limit=100_000_000, latency_s=LATENCY_S)
    )
    env = _worker_env(tmp_path, db_url, server.url)
    env["CRM_MCP_WORKER_CONCURRENCY"] = "4"
    pool = Pool(tmp_path, env)
    kills = 0
    try:
        asyncio.run(_queue_bookings(db_url, OPERATIONS))
        assert outbox_totals(name) == {"pending": OPERATIONS}
        for slot in range(WORKERS):
            pool.spawn(slot)
        # Slot 0 is the victim: killed a random moment after each incarnation has taken leases
        # (so each kill interrupts deliveries), until the kill phase ends or nothing is left to claim.
        while time.monotonic() - started < KILL_PHASE_S:
            victim = pool.procs[0]
            if not wait_for_leases(name, victim, started + KILL_PHASE_S):
                break
            time.sleep(rng.uniform(0.0, 0.3))
            kills += pool.kill(0)
            pool.spawn(0)
        while outbox_totals(name)["succeeded"] < OPERATIONS:
            totals = outbox_totals(name)
            assert totals["dead"] == 0, f"operations went dead: {totals}\n{pool.logs()}"
            assert time.monotonic() - started < DEADLINE_S, f"not delivered in time: {totals}\n{pool.logs()}"
            time.sleep(0.1)
        totals = outbox_totals(name)
        attempts = [r[0] for r in sql(name, "SELECT attempts FROM sync_operations")]
        guarded = sql(name, "SELECT COUNT(*) FROM sync_operations WHERE read_before_create")[0][0]
        pool.stop()
        snap = sim.snapshot()
    finally:
        pool.stop()
        server.stop()
        sql("test", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert totals == {"succeeded": OPERATIONS}, totals  # nothing lost, nothing dead
    assert kills >= MIN_KILLS, f"only {kills} kills landed before the queue was delivered"
    assert sum(a - 1 for a in attempts) >= kills, "each kill left leased operations to take over"
    assert 0 < guarded < OPERATIONS
    each_effect_once(snap, OPERATIONS)
    print(
        f"\npostgres crash test: {OPERATIONS} operations, {WORKERS} workers, {kills} SIGKILLs, "
        f"{sum(a - 1 for a in attempts)} re-claims, {guarded} guarded, "
        f"{time.monotonic() - started:.1f} s"
    )


def each_effect_once(snap: dict[str, Any], n: int) -> None:
    emails = Counter(c["email"] for c in snap["contacts"])
    assert len(emails) == n and set(emails.values()) == {1}, "one contact per email"
    contact_of = {c["id"]: c["email"] for c in snap["contacts"]}
    assert len(snap["appointments"]) == n
    slots = Counter((contact_of[a["contactId"]], a["startTime"]) for a in snap["appointments"])
    assert len(slots) == n, "two appointments for one booking"
    for kind, purpose in (("notes", "booking"), ("tasks", "reminder")):
        assert len(snap[kind]) == n, f"{len(snap[kind])} {kind}"
        marker = re.compile(rf"crm-mcp:(appt-\d{{4}}):{purpose}")
        refs = Counter(m.group(1) for item in snap[kind] for m in marker.finditer(item.get("body") or ""))
        assert len(refs) == n and set(refs.values()) == {1}, f"{kind} duplicated or missing"

"""SIGKILL the outbox worker at random points mid-delivery; the sandbox must end with every effect once.

200 `appointment.create` operations (contact upsert, calendar event, booking note, reminder task
each) are queued in a SQLite database exactly as `create_appointment` queues them. Real
`python -m crm_mcp worker` processes deliver them to the GoHighLevel simulator, which answers
after a simulated latency: most of a worker's life is spent waiting on the CRM, and the simulator
applies a write it has received even when the client dies meanwhile. So a kill often lands in
the window this test is about: the CRM has done the step, our checkpoint or commit has not
happened. Each worker is killed (SIGKILL, no cleanup) a random 0-400 ms after it has entered its
delivery loop (its first heartbeat): while claiming, calling the CRM or checkpointing. Its leases
(1 s) expire and the next worker reclaims the operations. A last worker finishes the queue. Then
the simulator must hold exactly one contact per email and exactly 200 appointments, notes and
tasks, and the outbox must be all `succeeded`.

The bookings are queued `fresh`, as the tool queues them: a first attempt creates without
looking first. So a kill right after such a create is the case that matters: the attempt that
takes over the expired lease must look first (`read_before_create`) and find it.

Real time is used (separate processes), bounded by DEADLINE_S; the test stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandboxConfig,
)
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment
from crm_mcp.state.outbox import enqueue
from crm_mcp.tools.appointments import create_command

pytestmark = pytest.mark.slow

OPERATIONS = 200
MIN_KILLS = 20
KILLS = 24  # a few spare: a worker that finishes the queue before its kill does not count
LATENCY_S = 0.02  # per CRM request; keeps workers mostly "waiting on the CRM" when killed
DEADLINE_S = 240.0
ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


async def _queue_bookings(url: str, n: int) -> None:
    """Local records + outbox rows, one transaction each, as the create_appointment tool writes them."""
    db = Database(url)
    try:
        await db.upgrade()
        now = datetime.now(UTC)
        for i in range(n):
            start = START + timedelta(minutes=30 * i)
            appt = Appointment(
                id=f"appt-{i:04d}",
                connection="gohighlevel",
                contact_first_name="Crash",
                contact_last_name=f"Test{i}",
                contact_email=f"crash{i}@example.com",
                contact_phone=None,
                calendar_id=SANDBOX_CALENDAR_ID,
                start_time=start,
                end_time=start + timedelta(minutes=30),
                timezone="America/New_York",
                title=f"Tour {i}",
                notes=f"booking {i}",
                status="confirmed",
                source="mcp",
                created_at=now,
                updated_at=now,
                version=1,
            )
            async with db.begin_write() as session:
                _op, created = await enqueue(
                    session,
                    idempotency_key=f"crash-{i}",
                    connection="gohighlevel",
                    action="appointment.create",
                    payload=create_command(appt).payload(),
                    entity_type="appointment",
                    entity_id=appt.id,
                    now=now,
                    fresh=True,  # as create_appointment queues it
                )
                assert created
                session.add(appt)
    finally:
        await db.dispose()


def _outbox(path: Path) -> Counter[str]:
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM sync_operations GROUP BY status").fetchall()
    return Counter({status: count for status, count in rows})


def _attempts(path: Path) -> list[int]:
    with sqlite3.connect(path, timeout=30) as conn:
        return [row[0] for row in conn.execute("SELECT attempts FROM sync_operations")]


def _worker_env(tmp: Path, db_url: str, crm_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        {
            "CRM_MCP_DATABASE_URL": db_url,
            "CRM_MCP_STATE_DIR": str(tmp / "state"),
            "CRM_MCP_GHL_TOKEN": SANDBOX_TOKEN,
            "CRM_MCP_GHL_LOCATION_ID": SANDBOX_LOCATION_ID,
            "CRM_MCP_GHL_CALENDAR_ID": SANDBOX_CALENDAR_ID,
            "CRM_MCP_GHL_BASE_URL": crm_url,
            "CRM_MCP_LEASE_SECONDS": "1",
            "CRM_MCP_POLL_INTERVAL_SECONDS": "0.05",
            "CRM_MCP_WORKER_CONCURRENCY": "4",
            "CRM_MCP_SYNC_BACKOFF_BASE_SECONDS": "0.05",
            "CRM_MCP_SYNC_BACKOFF_CAP_SECONDS": "0.5",
            "CRM_MCP_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _beating(path: Path, pid: int) -> bool:
    """True once the worker with this pid has entered its delivery loop (its first heartbeat)."""
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute("SELECT 1 FROM worker_heartbeats WHERE pid = ?", (pid,)).fetchone() is not None


def _guarded(path: Path) -> int:
    """Operations whose later attempts looked before creating (a lease was taken over)."""
    with sqlite3.connect(path, timeout=30) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM sync_operations WHERE read_before_create").fetchone()[0]
        )


def _reused_events(path: Path) -> int:
    """Deliveries whose appointment the CRM already had: a crash hit between its create and our checkpoint."""
    with sqlite3.connect(path, timeout=30) as conn:
        rows = conn.execute("SELECT result FROM sync_operations").fetchall()
    return sum(1 for (result,) in rows if json.loads(result or "{}").get("reused_event"))


class Workers:
    """Spawns `python -m crm_mcp worker` processes and reaps them; never leaves one behind."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        assert self.proc is None
        self.spawned += 1
        log = open(self.tmp / f"worker-{self.spawned}.log", "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crm_mcp", "worker"],
            cwd=self.tmp,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self.proc

    def kill(self) -> bool:
        """SIGKILL the running worker; False if it had already exited on its own."""
        proc, self.proc = self.proc, None
        assert proc is not None
        alive = proc.poll() is None
        if alive:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return alive and proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def logs(self) -> str:
        tail = []
        for path in sorted(self.tmp.glob("worker-*.log"))[-3:]:
            tail.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(tail)


def test_sigkilled_workers_deliver_every_operation_exactly_once(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("CRM_MCP_CRASH_SEED", "20261201")))
    sim, server = start_ghl_sandbox(
        GHLSandboxConfig(burst_max=1_000_000, daily_limit=100_000_000, latency_s=LATENCY_S)
    )
    db_path = tmp_path / "outbox.db"
    db_url = f"sqlite+aiosqlite:///{db_path}"
    workers = Workers(tmp_path, _worker_env(tmp_path, db_url, server.url))
    kills = 0
    try:
        asyncio.run(_queue_bookings(db_url, OPERATIONS))
        assert _outbox(db_path) == {"pending": OPERATIONS}

        # Kill phase: each worker dies a random moment after it has entered its delivery loop.
        while kills < KILLS and time.monotonic() - started < DEADLINE_S / 2:
            proc = workers.spawn()
            deadline = time.monotonic() + 30
            while not _beating(db_path, proc.pid) and proc.poll() is None:
                assert time.monotonic() < deadline, "worker did not start in 30 s\n" + workers.logs()
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.4))
            if workers.kill():
                kills += 1
            if _outbox(db_path)["succeeded"] == OPERATIONS:
                break  # the queue ran dry before the kills did
        assert kills >= MIN_KILLS, f"only {kills} kills landed before the queue was delivered"
        progress_at_last_kill = _outbox(db_path)

        # Recovery: one worker, left alone, reclaims the expired leases and finishes the queue.
        workers.spawn()
        while _outbox(db_path)["succeeded"] < OPERATIONS:
            totals = _outbox(db_path)
            assert totals["dead"] == 0, f"operations went dead: {totals}\n{workers.logs()}"
            assert time.monotonic() - started < DEADLINE_S, f"not delivered in time: {totals}\n" + (
                workers.logs()
            )
            time.sleep(0.1)
        workers.stop()
        snap = sim.snapshot()
    finally:
        workers.stop()
        server.stop()

    totals = _outbox(db_path)
    assert totals == {"succeeded": OPERATIONS}, totals  # nothing lost, nothing dead
    # The kills really interrupted deliveries: some operations were claimed again after a lease expired.
    assert progress_at_last_kill["succeeded"] < OPERATIONS
    assert sum(1 for a in _attempts(db_path) if a > 1) >= 1
    # Both paths ran: first deliveries with writes only, and attempts after a kill that looked first.
    assert 0 < _guarded(db_path) < OPERATIONS
    _assert_each_effect_once(snap)
    creates = {route: n for route, n in snap["stats"]["by_route"].items() if route.startswith("POST")}
    print(
        f"\ncrash test: {OPERATIONS} operations, {kills} SIGKILLs, {workers.spawned} workers, "
        f"{sum(a - 1 for a in _attempts(db_path))} re-claims, {time.monotonic() - started:.1f} s; "
        f"{_guarded(db_path)} operations guarded after a kill, the rest delivered with writes only; "
        f"{_reused_events(db_path)} appointments found by read-before-create after a crash; "
        f"create requests sent: {creates}"
    )


def _assert_each_effect_once(snap: dict[str, Any]) -> None:
    emails = Counter(c["email"] for c in snap["contacts"])
    assert len(emails) == OPERATIONS and set(emails.values()) == {1}, "one contact per email"
    contact_of = {c["id"]: c["email"] for c in snap["contacts"]}
    assert len(snap["appointments"]) == OPERATIONS
    slots = Counter((contact_of[a["contactId"]], a["startTime"]) for a in snap["appointments"])
    assert len(slots) == OPERATIONS, "two appointments for one booking"
    for kind, purpose in (("notes", "booking"), ("tasks", "reminder")):
        assert len(snap[kind]) == OPERATIONS, f"{len(snap[kind])} {kind}"
        marker = re.compile(rf"crm-mcp:(appt-\d{{4}}):{purpose}")
        refs = Counter(m.group(1) for item in snap[kind] for m in marker.finditer(item.get("body") or ""))
        assert len(refs) == OPERATIONS and set(refs.values()) == {1}, f"{kind} duplicated or missing"

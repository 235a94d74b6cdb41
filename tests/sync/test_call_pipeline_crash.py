"""RingCentral -> Zoho under fire: 500 calls over 3 days, a kill -9 of the worker in the middle of
the run and a 30 s Zoho outage, and still every call session logged exactly once.

Three processes, as an operations team runs it: the two simulators (served over loopback HTTP from
this test process, in their own threads) and `python -m crm_mcp worker`, whose scheduled pull
(`CRM_MCP_CALLS_INTERVAL`) finds the calls and whose outbox delivers them. The worker is SIGKILLed
once some calls have landed (leases of 2 s let the next worker take its pages over, with
read-before-create), then Zoho answers 503 to everything for 30 s while a new worker runs, then
recovers. Afterwards Zoho must hold one Calls record per session (none doubled, none lost), one
lead per caller, the ready recordings attached, and one follow-up task per missed inbound call.

Real time (separate processes), bounded by DEADLINE_S.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from crm_mcp.connectors.phones import to_e164
from crm_mcp.connectors.registry import get_provider

pytestmark = pytest.mark.slow

CALLS, DAYS = 500, 3
OUTAGE_S = 30.0
DEADLINE_S = 300.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sims() -> Iterator[tuple[object, object]]:
    phones = get_provider("ringcentral").sandbox(0)  # type: ignore[misc]
    zoho = get_provider("zoho").sandbox(0)  # type: ignore[misc]
    phones.sim.seed_calls(CALLS, DAYS, pending=3)
    phones.sim.set_limits(all=10_000)  # the account's real Heavy limit (10/min) would take 20 min
    try:
        yield phones, zoho
    finally:
        phones.stop()
        zoho.stop()


def _env(tmp: Path, phones: object, zoho: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    for prefix, handle in (("RINGCENTRAL", phones), ("ZOHO", zoho)):
        for key, value in handle.connection_options().items():  # type: ignore[attr-defined]
            env[f"CRM_MCP_{prefix}_{key.upper()}"] = str(value)
    env.update(
        {
            "CRM_MCP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'calls.db'}",
            "CRM_MCP_STATE_DIR": str(tmp / "state"),
            "CRM_MCP_CALLS_TARGET": "zoho",
            "CRM_MCP_CALLS_INTERVAL": "1s",
            "CRM_MCP_CALLS_LOOKBACK_HOURS": str(24 * DAYS + 2),
            "CRM_MCP_CALLS_SETTLE_SECONDS": "0",
            "CRM_MCP_CALLS_OWNERS": "101=4150868000000225013,102=4150868000000225014",
            "CRM_MCP_LEASE_SECONDS": "2",
            "CRM_MCP_POLL_INTERVAL_SECONDS": "0.05",
            "CRM_MCP_SYNC_BACKOFF_BASE_SECONDS": "0.2",
            "CRM_MCP_SYNC_BACKOFF_CAP_SECONDS": "2",
            "CRM_MCP_SYNC_MAX_ATTEMPTS": "200",
            "CRM_MCP_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _spawn(tmp: Path, env: dict[str, str], n: int) -> subprocess.Popen[bytes]:
    log = open(tmp / f"worker-{n}.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "crm_mcp", "worker"],
        cwd=tmp,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc


def _calls(db: Path) -> Counter[str]:
    if not db.exists():
        return Counter()
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            rows = conn.execute("SELECT status, COUNT(*) FROM call_logs GROUP BY status").fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return Counter()
    return Counter(dict(rows))


def _outbox(db: Path) -> Counter[str]:
    with sqlite3.connect(db, timeout=30) as conn:
        return Counter(dict(conn.execute("SELECT status, COUNT(*) FROM sync_operations GROUP BY status")))


def _wait(what: str, done: object, deadline: float, logs: Path) -> None:
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tails = "\n".join(
                p.read_text(errors="replace")[-2000:] for p in sorted(logs.glob("worker-*.log"))
            )
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.2)


def test_kill_and_outage_lose_nothing_and_double_nothing(tmp_path: Path, sims: tuple[object, object]) -> None:
    phones, zoho = sims
    env = _env(tmp_path, phones, zoho)
    db = tmp_path / "calls.db"
    deadline = time.monotonic() + DEADLINE_S
    worker = _spawn(tmp_path, env, 1)
    try:
        _wait("the first calls to land", lambda: _calls(db)["logged"] >= 60, deadline, tmp_path)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        assert worker.returncode == -signal.SIGKILL

        faults = f"{zoho.url}/_sandbox/faults"  # type: ignore[attr-defined]
        httpx2.post(faults, json={"kind": "error", "status": 503, "probability": 1.0}).raise_for_status()
        worker = _spawn(tmp_path, env, 2)
        time.sleep(OUTAGE_S)
        stalled = _calls(db)["logged"]
        httpx2.delete(faults).raise_for_status()

        _wait(
            "every call to be logged",
            lambda: sum(_calls(db).values()) == CALLS and _calls(db)["queued"] == 0,
            deadline,
            tmp_path,
        )
        _wait("the outbox to drain", lambda: set(_outbox(db)) == {"succeeded"}, deadline, tmp_path)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()

    assert stalled < CALLS  # the outage really held deliveries back
    with sqlite3.connect(db, timeout=30) as conn:
        guarded, attempts = conn.execute(
            "SELECT SUM(read_before_create), SUM(attempts) FROM sync_operations"
        ).fetchone()
    print(f"\ncalls={CALLS} logged_before_outage_end={stalled} guarded_ops={guarded} attempts={attempts}")
    store = zoho.sim.store  # type: ignore[attr-defined]
    sessions = phones.session_results()  # type: ignore[attr-defined]
    refs = Counter(
        re.search(r"\[ref:([^\]]+)\]", r["Description"]).group(1)  # type: ignore[union-attr]
        for r in store.tables["Calls"].values()
    )
    assert set(refs) == set(sessions)  # none lost
    assert max(refs.values()) == 1  # none doubled

    callers = {to_e164(c.external) for c in phones.sim.calls_now()}  # type: ignore[attr-defined]
    leads = [to_e164(r.get("Phone")) for r in store.tables["Leads"].values()]
    assert sorted(leads) == sorted(callers)  # one lead per caller, repeat callers share it

    ready = sum(1 for c in phones.sim.calls_now() if c.recording and not c.recording.pending)  # type: ignore[attr-defined]
    assert len(store.attachments) == ready

    missed_inbound = sum(
        1
        for c in phones.sim.calls_now()  # type: ignore[attr-defined]
        if c.direction == "Inbound" and sessions[c.telephony_session_id] != "answered"
    )
    assert len(store.tables["Tasks"]) == missed_inbound
    owners = Counter(r.get("Owner", {}).get("id") if isinstance(r.get("Owner"), dict) else r.get("Owner")
                     for r in store.tables["Calls"].values())  # fmt: skip
    assert owners["4150868000000225013"] > 0

"""Call-log pipeline cost: Zoho calls per call-log entry for a RingCentral -> Zoho run.

Seeds the RingCentral simulator with N calls (default 500) over 3 days, pulls them with the
pipeline (`pull_calls`) and delivers everything with the worker into the Zoho simulator (one
process, both simulators over loopback HTTP), and prints

    zoho_calls_per_entry  = Zoho API calls / call sessions logged
    zoho_credits_per_entry

next to the same-run baseline: the same calls logged one by one, as a per-call integration does
(look the caller up, create the lead alone if none, attach, log the call, a task if missed), into
an emptied Zoho. The ratio is the figure; the target is <= 0.85 (a repeat caller is looked up
once, leads are created 100 per call). Checks both runs logged every
session exactly once. Exits 1 when a target is missed.

    .venv/bin/python bench/calls.py [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm_mcp.connectors.base import CallActivity, CallLogs, Task
from crm_mcp.connectors.registry import get_provider
from crm_mcp.runtime import Runtime
from crm_mcp.server.run import build_worker
from crm_mcp.settings import load_settings
from crm_mcp.sync import call_pull
from crm_mcp.sync.calls import _new_lead, compose, external_number, lookup, recording_filename, subject

TARGET_RATIO = 0.85


async def per_call(rt: Runtime) -> int:
    """The baseline: each call on its own, as a per-call integration logs it (look the caller up,
    create the lead alone if none, attach the recording, log the call, a task if missed)."""
    phones = rt.connector("ringcentral", CallLogs)
    crm = rt.connector("zoho")
    now = datetime.now(UTC)
    cursor, n = None, 0
    while True:
        page = await phones.list_calls(now - timedelta(days=4), now, cursor)
        for call in page.calls:
            n += 1
            number = external_number(call)
            assert number
            found = await lookup(crm, number)
            contact = found[0] if found else (await crm.upsert_contact(_new_lead(number, [call])))[0]  # type: ignore[attr-defined]
            assert contact.id
            recording = "none"
            if call.recording is not None and call.recording.ready:
                content, kind = await phones.download_recording(call.recording, 20 * 1024 * 1024)
                name = recording_filename(call, kind)
                await crm.attach_file(contact.id, name, content, kind)  # type: ignore[attr-defined]
                recording = f"attached: {name}"
            body = compose(call, recording=recording)
            await crm.log_call(  # type: ignore[attr-defined]
                CallActivity(
                    contact_id=contact.id,
                    direction=call.direction,
                    result=call.result,
                    started_at=call.started_at,
                    duration_seconds=call.duration_seconds,
                    subject=subject(call),
                    description=body,
                    external_id=call.id,
                )
            )
            if call.direction == "inbound" and call.result != "answered":
                await crm.create_task(  # type: ignore[attr-defined]
                    Task(contact_id=contact.id, title=f"Call back: {subject(call)}", body=body, due_date=now)
                )
        if not page.next_cursor:
            return n
        cursor = page.next_cursor


async def one_run(phones: Any, zoho: Any, tmp: Path, *, naive: bool) -> dict[str, Any]:
    zoho.reset()
    options = {
        **{f"ringcentral_{k}": v for k, v in phones.connection_options().items()},
        **{f"zoho_{k}": v for k, v in zoho.connection_options().items()},
    }
    name = "naive" if naive else "pipeline"
    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / f'{name}.db'}",
        state_dir=tmp / name,
        calls_target="zoho",
        calls_lookback_hours=24 * 4,
        calls_settle_seconds=0,
        poll_interval_seconds=0.01,
        worker_concurrency=4,
        **options,
    )
    rt = Runtime(settings)
    try:
        await rt.warm_up()
        started = time.perf_counter()
        if naive:
            sessions = await per_call(rt)
        else:
            worker = await build_worker(rt)
            sessions = (await call_pull.pull_calls(rt)).queued
            while await worker.run_until_idle():
                pass
        elapsed = time.perf_counter() - started
    finally:
        await rt.aclose()
    state = zoho.sim
    calls = Counter(r["Description"].rsplit("[ref:", 1)[-1] for r in state.store.tables["Calls"].values())
    requests = sum(state.stats.values())
    return {
        "sessions": sessions,
        "logged": len(calls),
        "doubled": sum(n - 1 for n in calls.values()),
        "requests": requests,
        "credits": state.credits.used(),
        "leads": len(state.store.tables["Leads"]),
        "attachments": len(state.store.attachments),
        "seconds": elapsed,
    }


async def run(n: int) -> int:
    phones = get_provider("ringcentral").sandbox(0)  # type: ignore[misc]
    zoho = get_provider("zoho").sandbox(0)  # type: ignore[misc]
    try:
        phones.sim.seed_calls(n, 3, pending=3)
        phones.sim.set_limits(all=100_000)
        with tempfile.TemporaryDirectory() as tmp:
            base = await one_run(phones, zoho, Path(tmp), naive=True)
            ours = await one_run(phones, zoho, Path(tmp), naive=False)
    finally:
        phones.stop()
        zoho.stop()
    ok = True
    for label, r in (("baseline (per call, no batch)", base), ("pipeline", ours)):
        print(
            f"{label:30s} sessions={r['sessions']} logged={r['logged']} doubled={r['doubled']} "
            f"leads={r['leads']} attachments={r['attachments']} zoho_calls={r['requests']} "
            f"credits={r['credits']} ({r['seconds']:.1f} s)"
        )
        ok &= r["logged"] == r["sessions"] == n and r["doubled"] == 0
    per = ours["requests"] / n
    per_base = base["requests"] / n
    ratio = per / per_base
    print(f"zoho_calls_per_entry   = {per:.3f}   baseline {per_base:.3f}")
    print(f"zoho_credits_per_entry = {ours['credits'] / n:.3f}   baseline {base['credits'] / n:.3f}")
    verdict = "OK" if ratio <= TARGET_RATIO else "MISSED"
    print(f"ratio                  = {ratio:.3f}   target <= {TARGET_RATIO}  {verdict}")
    return 0 if ok and ratio <= TARGET_RATIO else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.calls)))


if __name__ == "__main__":
    main()

"""Cross-CRM sync cost: HubSpot write calls per record for a GoHighLevel -> HubSpot sync_records run.

Seeds N contacts (default 1,000) in the GoHighLevel simulator, runs `sync_records` from
GoHighLevel to HubSpot through a real MCP client and the engine (tool, outbox, worker, in one
process, both simulators over loopback HTTP), delivers everything, and prints

    write_calls_per_record = HubSpot write calls / records synced    target <= 1/90 (0.0111)
    duplicates             = HubSpot contacts beyond one per email    must be 0

next to the same-run baseline: the same records, as read from GoHighLevel, upserted one by one
(`upsert_contact`, the naive per-record path) into the emptied HubSpot simulator, as a ratio. A
second sync_records run then shows idempotency (everything unchanged, nothing queued).

Time is virtual for the connectors and the HubSpot simulator (rate-limit waits cost nothing), so
the run measures calls, not HubSpot's 100-per-10-s budget. Exits 1 when a target is missed.

    .venv/bin/python bench/sync_records.py [--records 1000]
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

from mcp import Client

from crm_mcp.connectors.base import Contact, Contacts
from crm_mcp.providers.gohighlevel.sandbox import SANDBOX_LOCATION_ID, start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox import SANDBOX_TOKEN as GHL_TOKEN
from crm_mcp.providers.hubspot.sandbox import SANDBOX_PORTAL_ID, start_hubspot_sandbox
from crm_mcp.providers.hubspot.sandbox import SANDBOX_TOKEN as HUBSPOT_TOKEN
from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import build_worker
from crm_mcp.settings import load_settings

TARGET = 1 / 90  # HubSpot write calls per record


class VirtualClock:
    """One clock for the tools, the worker, the connectors and the HubSpot simulator."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=max(0.0, seconds))
        await asyncio.sleep(0)


def seed_ghl(sim: Any, n: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with sim.lock:
        for i in range(n):
            added = (start - timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            cid = sim.api.ids.new()
            sim.api.contacts[cid] = {
                "id": cid,
                "locationId": SANDBOX_LOCATION_ID,
                "firstName": "Bench",
                "lastName": f"N{i}",
                "email": f"bench{i}@example.com",
                "phone": f"+1555{i:07d}",
                "dateAdded": added,
                "dateUpdated": added,
                "tags": [],
                "_custom": {},
            }


def duplicates(hub: Any) -> int:
    emails = Counter(c["properties"].get("email") for c in hub.contacts())
    return sum(count - 1 for count in emails.values())


async def deliver(worker: Any, rt: Runtime) -> None:
    while await worker.run_until_idle():
        rt.touch()


async def read_all(source: Contacts) -> list[Contact]:
    out, cursor = [], None
    while True:
        page = await source.search_contacts(None, 100, cursor)
        out += page.contacts
        cursor = page.next_cursor
        if cursor is None:
            return out


async def run(n: int) -> int:
    ghl, ghl_server = start_ghl_sandbox()
    hub, hub_server = start_hubspot_sandbox()
    tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-bench-"))
    clock = VirtualClock()
    hub.config.clock = clock.monotonic
    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        state_dir=tmp / "state",
        log_level="WARNING",
        ghl_token=GHL_TOKEN,
        ghl_location_id=SANDBOX_LOCATION_ID,
        ghl_base_url=ghl_server.url,
        hubspot_token=HUBSPOT_TOKEN,
        hubspot_base_url=hub_server.url,
        hubspot_portal_id=str(SANDBOX_PORTAL_ID),
    )
    rt = Runtime(settings, clock=clock, connector_overrides={"clock": clock.monotonic, "sleep": clock.sleep})
    try:
        seed_ghl(ghl, n)
        server = build_server(rt)
        await rt.warm_up()
        worker = await build_worker(rt)
        async with Client(server, cache=None) as client:
            t0 = time.perf_counter()
            first = await client.call_tool("sync_records", {"source": "gohighlevel", "target": "hubspot"})
            queued_s = time.perf_counter() - t0
            await deliver(worker, rt)
            engine_s = time.perf_counter() - t0
            assert not first.is_error, first.content
            r = first.structured_content or {}
            engine = hub.stats
            engine_dupes, engine_count = duplicates(hub), hub.contact_count()
            second = await client.call_tool("sync_records", {"source": "gohighlevel", "target": "hubspot"})
            again = second.structured_content or {}

        hub.reset()  # the baseline writes the same records into an empty portal
        records = await read_all(rt.connector("gohighlevel", Contacts))
        target = rt.connector("hubspot", Contacts)
        t0 = time.perf_counter()
        for contact in records:
            await target.upsert_contact(contact.model_copy(update={"id": None}))
        naive_s = time.perf_counter() - t0
        naive = hub.stats
    finally:
        await rt.aclose()
        ghl_server.stop()
        hub_server.stop()

    writes = sum(engine["write_calls"].values())
    naive_writes = sum(naive["write_calls"].values())
    per_record, naive_per_record = writes / n, naive_writes / n
    print(f"sync_records gohighlevel -> hubspot: {n} records in {r.get('pages')} page(s)")
    print(
        f"  engine:   created={r.get('to_create')} operations={r.get('operations_total')} "
        f"hubspot_write_calls={writes} (batch calls {engine['batch_calls']}, all requests "
        f"{engine['total']}) write_calls_per_record={per_record:.4f} (target <= {TARGET:.4f}) "
        f"contacts={engine_count} duplicates={engine_dupes}  queued in {queued_s:.2f}s, "
        f"delivered in {engine_s:.2f}s"
    )
    print(
        f"  baseline: upsert_contact one by one: hubspot_write_calls={naive_writes} (all requests "
        f"{naive['total']}) write_calls_per_record={naive_per_record:.4f}  in {naive_s:.2f}s"
    )
    print(
        f"  ratio engine/baseline: write calls {writes / naive_writes:.4f} "
        f"({naive_writes / max(writes, 1):.0f}x fewer), requests {engine['total'] / naive['total']:.4f}"
    )
    print(
        f"  second run: unchanged={again.get('unchanged')} to_create={again.get('to_create')} "
        f"to_update={again.get('to_update')} operations={again.get('operations_total')}"
    )
    ok = (
        per_record <= TARGET
        and engine_dupes == 0
        and engine_count == n
        and again.get("unchanged") == n
        and again.get("operations_total") == 0
    )
    print("  verdict:", "OK" if ok else "MISSED")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.records)))


if __name__ == "__main__":
    main()

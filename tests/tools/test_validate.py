"""validate_sync through MCP against the sandbox: every kind of drift, progress, and queued repairs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from tests.tools.test_appointments import BOOKING
from tests.tools.test_crm_queries import error_text, toolbox

pytestmark = pytest.mark.anyio


async def book(h: Any, n: int) -> list[str]:
    ids = []
    for i in range(n):
        start = (h.clock() + timedelta(days=3 + i)).replace(hour=15, minute=0, second=0, microsecond=0)
        r = await h.ok(
            "create_appointment",
            {**BOOKING, "email": f"p{i}@example.com", "start_time": start.replace(tzinfo=None).isoformat()},
        )
        ids.append(r["appointment"]["id"])
    await h.settle()
    return ids


async def remote_id(h: Any, local_id: str) -> str:
    from sqlalchemy import select

    from crm_mcp.state.models import ExternalRef

    db = await h.runtime.database()
    async with db.sessions() as s:
        q = select(ExternalRef.remote_id).where(
            ExternalRef.local_id == local_id, ExternalRef.remote_type == "appointment"
        )
        return str((await s.execute(q)).scalar_one())


async def test_in_sync_records_report_clean_with_progress(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        await book(h, 2)
        pending = await h.ok("create_appointment", {**BOOKING, "email": "later@example.com"})
        seen: list[float] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            seen.append(done)

        result = await h.client.call_tool("validate_sync", {}, progress_callback=progress)
        r = result.structured_content
        assert not result.is_error and r is not None
        assert r["checked"] == 3 and r["in_sync"] == 2 and r["pending"] == 1
        assert not (r["missing_remote"] or r["mismatches"] or r["stale_mappings"] or r["duplicates"])
        assert seen and seen == sorted(seen)
        assert pending["appointment"]["id"]
        limited = await h.ok("validate_sync", {"sample": 1})
        assert limited["checked"] == 1


async def test_drift_is_reported_then_repaired_through_the_outbox(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        deleted, changed, _ok = await book(h, 3)
        gone, moved = await remote_id(h, deleted), await remote_id(h, changed)
        with sim.lock:
            sim.api.events.pop(gone)
            sim.api.events[moved]["appointmentStatus"] = "cancelled"
            first = next(iter(sim.api.contacts.values()))
            twin_id = "Twin" + first["id"][4:]
            sim.api.contacts[twin_id] = {**first, "id": twin_id}
        from crm_mcp.connectors.base import Appointment as CrmAppointment
        from crm_mcp.state.models import Appointment

        connector = h.runtime.connector()
        contact_id = sim.snapshot()["appointments"][0]["contactId"]
        await connector.create_appointment(
            CrmAppointment(
                calendar_id=sim.snapshot()["appointments"][0]["calendarId"],
                contact_id=contact_id,
                start_time=h.clock() + timedelta(days=20, hours=1),
            )
        )
        db = await h.runtime.database()
        orphan = str(uuid.uuid4())
        async with db.begin_write() as s:
            s.add(
                Appointment(
                    id=orphan,
                    connection="gohighlevel",
                    contact_first_name="Ora",
                    contact_email="ora@example.com",
                    calendar_id=sim.snapshot()["appointments"][0]["calendarId"],
                    start_time=h.clock() + timedelta(days=9),
                    end_time=h.clock() + timedelta(days=9, minutes=30),
                    timezone="UTC",
                    title="Imported",
                    status="confirmed",
                    version=1,
                    created_at=h.clock(),
                    updated_at=h.clock(),
                )
            )

        r = await h.ok("validate_sync", {})
        assert [i["local_id"] for i in r["stale_mappings"]] == [deleted]
        assert [(m["local_id"], m["field"], m["local"], m["remote"]) for m in r["mismatches"]] == [
            (changed, "status", "confirmed", "cancelled")
        ]
        assert [i["local_id"] for i in r["missing_remote"]] == [orphan]
        assert len(r["missing_local"]) == 1 and len(r["duplicates"]) == 1
        assert twin_id in r["duplicates"][0]["contact_ids"]
        assert r["repairs"] == [] and any("repair=true" in x for x in r["recommendations"])

        assert "idempotency_key" in error_text(await h.call("validate_sync", {"repair": True}))
        fixed = await h.ok("validate_sync", {"repair": True, "idempotency_key": "fix-1"})
        assert {(x["issue"], x["local_id"]) for x in fixed["repairs"]} == {
            ("stale_mapping", deleted),
            ("mismatch", changed),
            ("missing_remote", orphan),
        }
        again = await h.ok("validate_sync", {"repair": True, "idempotency_key": "fix-1"})
        assert again["repairs"] == [] and again["pending"] == 3  # the fixes are queued, nothing queued twice
        await h.settle()
        after = await h.ok("validate_sync", {})
        assert not (after["stale_mappings"] or after["mismatches"] or after["missing_remote"])
        assert after["in_sync"] == 4
        events = sim.snapshot()["appointments"]
        assert sum(e["title"] == "Imported" for e in events) == 1


async def test_contacts_are_compared_by_email(ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        await h.ok("upsert_contact", {"first_name": "Mo", "email": "mo@example.com", "phone": "+15550003333"})
        await h.ok("upsert_contact", {"first_name": "Di", "email": "di@example.com"})
        await h.settle()
        with sim.lock:
            for c in sim.api.contacts.values():
                if c["email"] == "mo@example.com":
                    c["firstName"] = "Maurice"
        r = await h.ok("validate_sync", {"object": "contact"})
        assert r["checked"] == 2 and r["in_sync"] == 1
        assert [(m["field"], m["local"], m["remote"]) for m in r["mismatches"]] == [
            ("first_name", "Mo", "Maurice")
        ]
        fixed = await h.ok("validate_sync", {"object": "contact", "repair": True, "idempotency_key": "c-1"})
        assert [x["action"] for x in fixed["repairs"]] == ["contact.upsert"]
        await h.settle()
        assert (await h.ok("validate_sync", {"object": "contact"}))["in_sync"] == 2


async def test_bad_arguments(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        assert "sample" in error_text(await h.call("validate_sync", {"sample": 0}))
        assert "object" in error_text(await h.call("validate_sync", {"object": "deal"}))
        assert "No connection" in error_text(await h.call("validate_sync", {"connection": "nope"}))

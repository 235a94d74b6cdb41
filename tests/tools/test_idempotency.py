"""Stripe-grade idempotency on every write tool, through a real MCP client against the GHL sandbox.

The rules, as the tools implement them:

- A key (client-supplied, or derived from the arguments when omitted) that was used before returns
  the saved result (same operation, same local record, `replayed: true`) and does nothing else.
- The same key with different arguments is an error that says so (`IdempotencyError: idempotency
  key ... was already used for a different request`), across tools too; nothing is written.
- A concurrent duplicate never becomes a second operation. The tool's local write is one short
  transaction (SQLite: one writer; PostgreSQL: the UNIQUE key makes the second insert wait for the
  first), so a duplicate waits for it and replays the saved result; delivery to the CRM is
  reported as `sync_status` (pending / in_flight / succeeded), which is the "in progress" signal.
- Retention: keys live in the outbox (`sync_operations.idempotency_key`, UNIQUE) and nothing
  deletes outbox rows, so keys are kept forever, which is more than the 72 hours promised.
  `test_keys_are_kept_past_72_hours` pins that promise down.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_mcp.state.models import Appointment, SyncOperation
from tests.conftest import POSTGRES_URL, require_service
from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Ida",
    "last_name": "Key",
    "email": "ida@example.com",
    "start_time": "2026-12-01T15:00:00",
    "allow_past": True,  # fixed dates, recorded even once they are past
    "timezone": "America/New_York",
    "title": "Viewing",
}


async def operations(h: Harness) -> int:
    db = await h.runtime.database()
    async with db.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(SyncOperation))).scalar_one())


async def local_appointments(h: Harness) -> int:
    db = await h.runtime.database()
    async with db.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(Appointment))).scalar_one())


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return str(result.content[0].text)


@pytest.fixture
async def h(ghl_sandbox: Any, settings_factory: Any) -> AsyncIterator[Harness]:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as hh:
        yield hh


async def booked(h: Harness, **extra: Any) -> dict[str, Any]:
    return await h.ok("create_appointment", {**BOOKING, **extra})


async def contact_id(h: Harness, sim: Any) -> str:
    await h.ok("upsert_contact", {"first_name": "Noa", "email": "noa@example.com"})
    await h.settle()
    return str(next(c["id"] for c in sim.snapshot()["contacts"] if c["email"] == "noa@example.com"))


# -- replay -----------------------------------------------------------------------------------


async def test_replay_returns_the_saved_result_and_does_nothing_else(h: Harness, ghl_sandbox: Any) -> None:
    sim, _ = ghl_sandbox
    first = await booked(h, idempotency_key="book-ida")
    await h.settle()
    again = await booked(h, idempotency_key="book-ida")
    assert again["replayed"] is True and first["replayed"] is False
    assert again["sync_operation_id"] == first["sync_operation_id"]
    assert again["appointment"]["id"] == first["appointment"]["id"]
    same_instant = datetime.fromisoformat(again["appointment"]["start_time"])  # stored as UTC
    assert same_instant == datetime.fromisoformat(first["appointment"]["start_time"])
    assert again["sync_status"] == "succeeded"  # the saved operation, as it stands now
    assert "used before" in again["message"]
    await h.settle()
    assert await operations(h) == 1 and await local_appointments(h) == 1
    assert len(sim.snapshot()["appointments"]) == 1


async def test_a_derived_key_replays_the_same_request(h: Harness) -> None:
    first = await booked(h)
    again = await booked(h)
    assert again["replayed"] and again["sync_operation_id"] == first["sync_operation_id"]
    # a different request derives a different key: a second, separate booking
    other = await booked(h, start_time="2026-12-02T15:00:00")
    assert not other["replayed"] and other["sync_operation_id"] != first["sync_operation_id"]
    assert await operations(h) == 2


@pytest.mark.parametrize("with_key", [True, False])
async def test_every_write_tool_replays(h: Harness, ghl_sandbox: Any, with_key: bool) -> None:
    sim, _ = ghl_sandbox
    cid = await contact_id(h, sim)
    appt = (await booked(h))["appointment"]["id"]
    calls = {
        "create_appointment": {**BOOKING, "start_time": "2026-12-03T10:00:00"},
        "update_appointment_status": {"appointment_id": appt, "action": "confirm"},
        "upsert_contact": {"first_name": "Ola", "email": "ola@example.com", "tags": ["vip"]},
        "add_contact_note": {"contact_id": cid, "body": "Called back."},
        "qualify_lead": {"first_name": "Pia", "email": "pia@example.com", "budget": "$3000", "apply": True},
    }
    for tool, args in calls.items():
        if with_key:
            args = {**args, "idempotency_key": f"key-{tool}"}
        before = await operations(h)
        first = await h.ok(tool, args)
        second = await h.ok(tool, args)
        assert await operations(h) == before + 1, tool
        assert second["sync_operation_id"] == first["sync_operation_id"], tool
        assert second.get("replayed", True) and not first.get("replayed", False), tool


# -- same key, different request --------------------------------------------------------------


async def test_same_key_with_different_arguments_is_an_error_that_says_so(
    h: Harness, ghl_sandbox: Any
) -> None:
    sim, _ = ghl_sandbox
    cid = await contact_id(h, sim)
    appt = (await booked(h, idempotency_key="k-book"))["appointment"]["id"]
    await h.ok(
        "update_appointment_status", {"appointment_id": appt, "action": "confirm", "idempotency_key": "k-st"}
    )
    await h.ok("upsert_contact", {"first_name": "Ola", "email": "ola@example.com", "idempotency_key": "k-up"})
    await h.ok("add_contact_note", {"contact_id": cid, "body": "one", "idempotency_key": "k-note"})
    before = await operations(h)
    changed = [
        ("create_appointment", {**BOOKING, "title": "Another title", "idempotency_key": "k-book"}),
        (
            "update_appointment_status",
            {"appointment_id": appt, "action": "cancel", "idempotency_key": "k-st"},
        ),
        (
            "update_appointment_status",
            {"appointment_id": appt, "action": "confirm", "reason": "new reason", "idempotency_key": "k-st"},
        ),
        ("upsert_contact", {"first_name": "Ola", "email": "other@example.com", "idempotency_key": "k-up"}),
        ("add_contact_note", {"contact_id": cid, "body": "two", "idempotency_key": "k-note"}),
        # a key is one request whatever the tool: reusing a booking's key for a status change is refused
        (
            "update_appointment_status",
            {"appointment_id": appt, "action": "confirm", "idempotency_key": "k-book"},
        ),
        ("upsert_contact", {"first_name": "Ida", "email": "ida@example.com", "idempotency_key": "k-book"}),
    ]
    for tool, args in changed:
        text = error_text(await h.call(tool, args))
        assert "IdempotencyError" in text and "different request" in text, (tool, text)
        assert repr(args["idempotency_key"]) in text and "new key" in text, text
    assert await operations(h) == before  # nothing written by a refused call
    async with (await h.runtime.database()).sessions() as s:
        row = await s.get(Appointment, appt)
        assert row is not None and row.status == "confirmed"  # the refused cancel changed nothing


async def test_a_key_used_on_another_connection_names_nothing_of_it(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Any
) -> None:
    """Keys are global, connections are not the caller's to see: reusing another connection's
    key is refused without naming that connection, its operation or its appointment."""
    from crm_mcp.providers.gohighlevel.sandbox.simulator import (
        SANDBOX_CALENDAR_ID,
        SANDBOX_LOCATION_ID,
        SANDBOX_TOKEN,
    )

    _sim, server = ghl_sandbox
    (tmp_path / "crm-mcp.toml").write_text(
        f'[connections.clinic-east]\nprovider = "gohighlevel"\ntoken = "{SANDBOX_TOKEN}"\n'
        f'location_id = "{SANDBOX_LOCATION_ID}"\ncalendar_id = "{SANDBOX_CALENDAR_ID}"\n'
        f'base_url = "{server.url}"\n'
    )
    async with harness(settings_factory(server.url)) as h:
        east = {"connection": "clinic-east", "idempotency_key": "east-key"}
        theirs = await h.ok("upsert_contact", {"first_name": "Ida", "email": "ida@example.com", **east})
        east_booking = await booked(h, connection="clinic-east", idempotency_key="east-book")
        ours = (await booked(h, connection="gohighlevel", start_time="2026-12-04T15:00:00"))["appointment"]
        secret = {"clinic-east", theirs["sync_operation_id"], east_booking["sync_operation_id"]}
        secret.add(east_booking["appointment"]["id"])
        reuses = [
            (
                "upsert_contact",
                {"first_name": "Max", "email": "max@example.com", "connection": "gohighlevel"},
            ),
            ("create_appointment", {**BOOKING, "connection": "gohighlevel"}),
            ("update_appointment_status", {"appointment_id": ours["id"], "action": "confirm"}),
        ]
        for key in ("east-key", "east-book"):
            for tool, args in reuses:
                text = error_text(await h.call(tool, {**args, "idempotency_key": key}))
                assert "IdempotencyError" in text and repr(key) in text, (tool, text)
                assert not [s for s in secret if s in text], (tool, text)
        # on its own connection the caller is told which operation holds the key
        own = error_text(
            await h.call("upsert_contact", {"first_name": "Max", "email": "m@example.com", **east})
        )
        assert theirs["sync_operation_id"] in own


# -- concurrent duplicates --------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(
    request: pytest.FixtureRequest, settings_factory: Any, ghl_sandbox: Any
) -> AsyncIterator[Any]:
    """Settings on SQLite, or on a throwaway PostgreSQL database (dropped afterwards)."""
    _sim, server = ghl_sandbox
    if request.param == "sqlite":
        yield settings_factory(server.url)
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import asyncpg

    name = f"crm_mcp_idem_{uuid.uuid4().hex[:10]}"
    admin_dsn = POSTGRES_URL.replace("+asyncpg", "")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield settings_factory(server.url, database_url=POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.mark.parametrize("with_key", [True, False])
async def test_concurrent_duplicates_are_one_operation(
    backend: Any, ghl_sandbox: Any, with_key: bool
) -> None:
    sim, _ = ghl_sandbox
    args = {**BOOKING, **({"idempotency_key": "same-time"} if with_key else {})}
    async with harness(backend) as h:
        results = await asyncio.gather(*(h.call("create_appointment", args) for _ in range(8)))
        ok = [dict(r.structured_content or {}) for r in results if not r.is_error]
        errors = [error_text(r) for r in results if r.is_error]
        # every duplicate either replays the saved result or is told the request is in progress
        assert all("in progress" in e.lower() for e in errors), errors
        assert sum(1 for r in ok if not r["replayed"]) == 1
        assert len({r["sync_operation_id"] for r in ok}) == 1
        assert len({r["appointment"]["id"] for r in ok}) == 1
        assert await operations(h) == 1 and await local_appointments(h) == 1
        await h.settle()
    assert len(sim.snapshot()["appointments"]) == 1


async def test_concurrent_status_changes_with_one_key_are_one_change(h: Harness, ghl_sandbox: Any) -> None:
    sim, _ = ghl_sandbox
    appt = (await booked(h))["appointment"]["id"]
    await h.settle()
    args = {"appointment_id": appt, "action": "cancel", "reason": "ill", "idempotency_key": "cancel-once"}
    results = await asyncio.gather(*(h.call("update_appointment_status", args) for _ in range(6)))
    assert not any(r.is_error for r in results), [error_text(r) for r in results if r.is_error]
    replays = [dict(r.structured_content or {})["replayed"] for r in results]
    assert replays.count(False) == 1
    await h.settle()
    assert await operations(h) == 2  # the booking and one cancellation
    follow_ups = [t for t in sim.snapshot()["tasks"] if "cancelled" in t["title"].lower()]
    assert len(follow_ups) == 1


# -- retention --------------------------------------------------------------------------------


async def test_keys_are_kept_past_72_hours(h: Harness) -> None:
    first = await booked(h, idempotency_key="long-lived")
    await h.settle()
    for hours in (72, 24 * 30):
        h.clock.advance(hours * 3600 + 1)
        again = await booked(h, idempotency_key="long-lived")
        assert again["replayed"] and again["sync_operation_id"] == first["sync_operation_id"]
        text = error_text(
            await h.call("create_appointment", {**BOOKING, "title": "x", "idempotency_key": "long-lived"})
        )
        assert "different request" in text
        await h.settle()  # the worker's passes over time delete nothing either
    assert await operations(h) == 1

"""The schema comes from alembic, matches the models, and SQLite is configured for an outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from crm_mcp.state.db import Database, default_sqlite_url
from crm_mcp.state.models import Appointment, Base

pytestmark = pytest.mark.anyio

TABLES = {
    "connections",
    "appointments",
    "leads",
    "external_refs",
    "sync_operations",
    "dead_letters",
    "sync_log",
    "inbox_events",
    "worker_heartbeats",
    "call_logs",
    "call_pulls",
    "connection_state",
    "alembic_version",
}


async def test_upgrade_creates_every_table_and_is_repeatable(tmp_path: Path) -> None:
    db = Database(default_sqlite_url(tmp_path / "nested" / "state"))
    try:
        await db.upgrade()
        assert (tmp_path / "nested" / "state" / "crm-mcp.db").exists()
        await db.upgrade()  # at head: nothing to do, no error
        assert await db.current_revision() == "0008"
        async with db.engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert names == TABLES
    finally:
        await db.dispose()


async def test_migration_matches_models(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/m.db")
    try:
        await db.upgrade()

        def diff(conn):  # type: ignore[no-untyped-def]
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)

        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/p.db")
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
    finally:
        await db.dispose()


async def test_timestamps_round_trip_as_aware_utc(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        await db.upgrade()
        paris = timezone(timedelta(hours=2))
        start = datetime(2026, 5, 1, 11, 30, tzinfo=paris)
        async with db.begin_write() as s:
            s.add(Appointment(id="a1", connection="gohighlevel", start_time=start, status="confirmed"))
        async with db.sessions() as s:
            appt = (await s.execute(select(Appointment))).scalar_one()
        assert appt.start_time == start
        assert appt.start_time.tzinfo is not None
        assert appt.start_time.utcoffset() == timedelta(0)
        assert appt.start_time == datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
        assert appt.version == 1
    finally:
        await db.dispose()


async def test_write_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/r.db")
    try:
        await db.upgrade()
        with pytest.raises(RuntimeError):
            async with db.begin_write() as s:
                s.add(Appointment(id="a1", connection="c", start_time=datetime.now(UTC)))
                await s.flush()
                raise RuntimeError("boom")
        async with db.sessions() as s:
            assert (await s.execute(select(Appointment))).first() is None
    finally:
        await db.dispose()


async def test_concurrent_first_starts_migrate_once(tmp_path: Path) -> None:
    import asyncio

    dbs = [Database(f"sqlite+aiosqlite:///{tmp_path}/race.db") for _ in range(3)]
    try:
        await asyncio.gather(*(d.upgrade() for d in dbs))
        assert await dbs[0].current_revision() == "0008"
    finally:
        for d in dbs:
            await d.dispose()


async def test_0002_moves_appointment_statuses_to_the_neutral_vocabulary(tmp_path: Path) -> None:
    """Rows written under 0001 with GoHighLevel's words read back in the neutral vocabulary."""
    from alembic import command

    from crm_mcp.state.db import alembic_config

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
            for i, status in enumerate(("new", "showed", "noshow", "confirmed")):
                await conn.execute(
                    text(
                        "INSERT INTO appointments (id, connection, start_time, timezone, status, source,"
                        " version, created_at, updated_at) VALUES (:id, 'c', :t, 'UTC', :s, 'mcp', 1, :t, :t)"
                    ),
                    {"id": f"a{i}", "s": status, "t": "2026-01-01 00:00:00"},
                )
        await db.upgrade()
        async with db.engine.connect() as conn:
            rows = dict((await conn.execute(text("SELECT id, status FROM appointments"))).all())
        assert rows == {"a0": "scheduled", "a1": "completed", "a2": "no_show", "a3": "confirmed"}
        async with db.engine.connect() as conn:
            with pytest.raises(Exception, match="CHECK"):
                await conn.execute(text("UPDATE appointments SET status = 'showed' WHERE id = 'a0'"))
    finally:
        await db.dispose()


async def test_0003_dedupes_webhooks_per_connection_and_downgrades(tmp_path: Path) -> None:
    """Under 0002 an event id was unique per provider; from 0003 per (provider, connection)."""
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    from crm_mcp.state.db import alembic_config

    insert = text(
        "INSERT INTO inbox_events (provider, connection, event_id, event_type, verified, payload,"
        " received_at) VALUES ('gohighlevel', :c, 'evt-1', 'ContactCreate', 1, '{}', '2026-01-01 00:00:00')"
    )
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0002"))
            await conn.execute(insert, {"c": "clinic-east"})
        await db.upgrade()
        async with db.engine.begin() as conn:
            await conn.execute(insert, {"c": "clinic-west"})  # another tenant, the same id: stored
        with pytest.raises(IntegrityError):
            async with db.engine.begin() as conn:
                await conn.execute(insert, {"c": "clinic-west"})  # a redelivery: still a duplicate
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0002"))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT connection FROM inbox_events"))).scalars().all()
        assert rows == ["clinic-east"]  # the old key keeps the first event received
    finally:
        await db.dispose()

"""`crm-mcp db migrate-to`: the whole state copied, verified, and refused into a non-empty target."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from crm_mcp.connectors.webhooks import IncomingEvent
from crm_mcp.errors import InvalidRequestError, StateError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.migrate import migrate, tables
from crm_mcp.state.models import Appointment, Connection, ExternalRef, SyncLog
from crm_mcp.sync.inbox import store
from tests.conftest import POSTGRES_URL, require_service

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


async def populate(db: Database) -> None:
    """A bit of everything: a connection with encrypted credentials, a local record and its refs,
    succeeded, pending and dead operations with their log and dead letter, webhook events."""
    await db.upgrade()
    async with db.begin_write() as s:
        s.add(
            Connection(
                name="east", provider="gohighlevel", credentials_encrypted=b"\x00\xffsecret", key_id="k1"
            )
        )
        s.add(
            Appointment(
                id="appt-1",
                connection="east",
                contact_email="a@example.com",
                start_time=T0,
                end_time=T0 + timedelta(minutes=30),
                status="confirmed",
            )
        )
        s.add(
            ExternalRef(
                connection="east",
                local_type="appointment",
                local_id="appt-1",
                remote_type="event",
                remote_id="ev1",
            )
        )
    for n, key in enumerate(("ok", "dead", "pending")):  # a second apart: claimed in this order
        async with db.begin_write() as s:
            await outbox.enqueue(
                s,
                idempotency_key=key,
                connection="east",
                action="appointment.create",
                payload={"k": key, "nested": {"list": [1, 2]}},
                entity_type="appointment",
                entity_id="appt-1",
                now=T0 + timedelta(seconds=n),
            )
    claimed = await outbox.claim_due(
        db, worker_id="w", limit=2, lease=timedelta(seconds=60), now=T0 + timedelta(minutes=1)
    )
    for op in claimed:
        if op.idempotency_key == "ok":
            await outbox.mark_succeeded(db, op, {"remote": "x"}, T0)
        else:
            err = InvalidRequestError("bad", provider="ghl", status=422)
            await outbox.mark_failed(db, op, err, T0, retryable=False, retry_at=None)
    await store(db, "gohighlevel", "east", [IncomingEvent("e1", "ContactCreate", {"a": 1})], T0)


async def dump(db: Database) -> dict[str, list[Any]]:
    out = {}
    async with db.engine.connect() as conn:
        for table in tables():
            keys = list(table.primary_key.columns) or list(table.columns)
            rows = (await conn.execute(select(table).order_by(*keys))).all()
            out[table.name] = [tuple(row) for row in rows]
    return out


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/source.db")
    await populate(db)
    yield db
    await db.dispose()


async def test_sqlite_to_sqlite_copies_every_row(source: Database, tmp_path: Path) -> None:
    target = Database(f"sqlite+aiosqlite:///{tmp_path}/target.db")
    try:
        seen: list[tuple[str, int, int]] = []
        report = await migrate(source, target, batch=1, progress=lambda *a: seen.append(a))
        assert await dump(target) == await dump(source)
        assert report.counts["sync_operations"] == 3 and report.counts["dead_letters"] == 1
        assert ("sync_log", 2, 2) in seen  # batches of one, reported as they go
        # a second copy into the now non-empty target is refused, then allowed with force
        with pytest.raises(StateError, match="not empty"):
            await migrate(source, target)
        await migrate(source, target, force=True)
        assert await dump(target) == await dump(source)
    finally:
        await target.dispose()


@pytest.mark.postgres
async def test_sqlite_to_postgres_copies_every_row_and_keeps_ids_going(source: Database) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"crm_mcp_migrate_{uuid.uuid4().hex[:12]}"
    admin = Database(POSTGRES_URL)
    async with admin.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    target = Database(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        await migrate(source, target)
        assert await dump(target) == await dump(source)
        # the copied state works there: the pending operation is claimable, new ids do not collide
        ops = await outbox.claim_due(
            target, worker_id="w", limit=5, lease=timedelta(seconds=60), now=T0 + timedelta(minutes=1)
        )
        assert [op.idempotency_key for op in ops] == ["pending"]
        await outbox.mark_succeeded(target, ops[0], {}, T0)
        async with target.sessions() as s:
            assert len((await s.execute(select(SyncLog.id))).all()) == 3
    finally:
        await target.dispose()
        async with admin.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_the_cli_copies_and_refuses_a_non_empty_target(source: Database, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        CRM_MCP_DATABASE_URL=str(source.url),
        CRM_MCP_STATE_DIR=str(tmp_path / "state"),
        CRM_MCP_LOG_LEVEL="WARNING",
    )
    target_url = f"sqlite+aiosqlite:///{tmp_path}/cli-target.db"
    argv = [sys.executable, "-m", "crm_mcp", "db", "migrate-to", target_url]
    first = await asyncio.to_thread(
        subprocess.run, argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert "counts verified" in first.stdout and "sync_operations: 3" in first.stdout
    assert "sync_operations: 3 rows" in first.stderr  # not a terminal: one line per table
    again = await asyncio.to_thread(
        subprocess.run, argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 1 and "not empty" in again.stderr and "--force" in again.stderr
    forced = await asyncio.to_thread(
        subprocess.run, [*argv, "--force"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert forced.returncode == 0, forced.stderr

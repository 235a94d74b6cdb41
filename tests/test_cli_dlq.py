"""`crm-mcp dlq list|show|retry` through the real entry point: full ids on demand, any unique
prefix accepted, reasons wrapped rather than cut, and one attempt count in reason and record."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from crm_mcp.errors import RateLimitedError, UpstreamUnavailableError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import DeadLetter

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
LONG = "the CRM answered 503 Service Unavailable " + "and kept answering it " * 8 + "END-OF-REASON"
IDS = ["aaaa1111-0000-4000-8000-000000000001", "aaaa2222-0000-4000-8000-000000000002"]


async def _dead(db: Database, key: str) -> None:
    """One operation: a failed attempt, a rate-limit wait (not an attempt), a final failure."""
    async with db.begin_write() as s:
        await outbox.enqueue(
            s,
            idempotency_key=key,
            connection="gohighlevel",
            action="appointment.create",
            payload={"k": key},
            entity_type="appointment",
            entity_id=key,
            now=T0,
        )
    now = T0
    errors: list[tuple[Exception, bool]] = [
        (UpstreamUnavailableError("502 first", provider="ghl", status=502), True),
        (RateLimitedError("slow down", provider="ghl"), True),
        (UpstreamUnavailableError(LONG, provider="ghl", status=503), False),
    ]
    for err, again in errors:
        (claimed,) = await outbox.claim_due(db, worker_id="w", limit=1, lease=LEASE, now=now)
        retry_at = now + timedelta(seconds=1) if again else None
        await outbox.mark_failed(db, claimed, err, now, retryable=True, retry_at=retry_at)
        now += timedelta(seconds=1)


async def _make(path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.upgrade()
    for i, entry_id in enumerate(IDS):
        await _dead(db, f"k{i}")
        async with db.begin_write() as s:  # known ids, so that a prefix is ambiguous on purpose
            await s.execute(
                update(DeadLetter)
                .where(DeadLetter.id.not_in(IDS))
                .values(id=entry_id)
                .execution_options(synchronize_session=False)
            )
    await db.dispose()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "dlq.db"
    asyncio.run(_make(path))
    return path


def run(db_path: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env["CRM_MCP_DATABASE_URL"] = f"sqlite+aiosqlite:///{db_path}"
    env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "crm_mcp", *args],
        env=env,
        cwd=db_path.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_reason_and_record_count_the_same_attempts(db_path: Path) -> None:
    out = run(db_path, "dlq", "list", "--json")
    assert out.returncode == 0, out.stderr
    entries = json.loads(out.stdout)["entries"]
    assert {e["id"] for e in entries} == set(IDS)  # full ids in --json
    for e in entries:
        # two failed attempts; the rate-limit wait between them is not one
        assert e["attempts"] == 2 and "Gave up after 2 attempt(s)" in e["reason"], e


@pytest.mark.parametrize("columns", [80, 160])
def test_list_wraps_reasons_and_shortens_ids_unless_wide(db_path: Path, columns: int) -> None:
    out = run(db_path, "dlq", "list", columns=columns)
    assert out.returncode == 0, out.stderr
    flat = "".join(ch for ch in out.stdout if ch.isalnum())
    assert "ENDOFREASON" in flat  # the whole reason is there, wrapped, not cut
    assert IDS[0] not in out.stdout and IDS[0][:8] in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= columns
    wide = run(db_path, "dlq", "list", "--wide", columns=columns)
    assert wide.returncode == 0 and IDS[0] in wide.stdout and IDS[1] in wide.stdout


def test_show_and_retry_take_a_unique_prefix(db_path: Path) -> None:
    shown = run(db_path, "dlq", "show", IDS[1][:6])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == IDS[1]
    ambiguous = run(db_path, "dlq", "show", "aaaa")
    lines = ambiguous.stderr.strip().splitlines()
    assert ambiguous.returncode == 2 and len(lines) == 1, ambiguous.stderr
    assert "ambiguous" in lines[0] and IDS[0] in lines[0] and IDS[1] in lines[0]
    missing = run(db_path, "dlq", "show", "ffff")
    assert missing.returncode == 2 and "no dead-letter entry" in missing.stderr
    retried = run(db_path, "dlq", "retry", IDS[0][:6])
    assert retried.returncode == 0 and "requeued 1 operation" in retried.stdout, retried.stderr
    rest = json.loads(run(db_path, "dlq", "list", "--json").stdout)["entries"]
    assert [e["id"] for e in rest] == [IDS[1]]

"""`refs.link_missing`: the refs a record lacks are added, the ones it has are kept (one statement)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm_mcp.state import refs
from crm_mcp.state.db import Database

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/refs.db")
    await database.upgrade()
    yield database
    await database.dispose()


async def check_link_missing_keeps_what_is_there(db: Database) -> None:
    """Shared with the PostgreSQL suite (tests/state/test_postgres.py)."""
    await db.run_write(refs.link_missing("ghl", "appointment", "a1", {"contact": "c-old"}, T0))
    found = {"contact": "c-new", "appointment": "e1", "note": "n1"}
    await db.run_write(refs.link_missing("ghl", "appointment", "a1", found, T0))
    await db.run_write(refs.link_missing("ghl", "appointment", "a1", found, T0))  # again: nothing new
    async with db.sessions() as session:
        assert await refs.refs_of(session, "ghl", "appointment", "a1") == {
            "contact": "c-old",  # an existing ref is not replaced
            "appointment": "e1",
            "note": "n1",
        }
        assert await refs.refs_of(session, "other", "appointment", "a1") == {}


async def test_link_missing_adds_what_is_missing_and_keeps_what_is_there(db: Database) -> None:
    await check_link_missing_keeps_what_is_there(db)

"""`Database.run_write`: a synchronous transaction on the SQLite writer thread (or the async engine),
committed in groups: what queues meanwhile (or lingers) shares one commit, each caller its outcome."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select

from crm_mcp.state import db as db_module
from crm_mcp.state.db import Database
from crm_mcp.state.models import WorkerHeartbeat

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BEATS = WorkerHeartbeat.__table__


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/rw.db")
    await database.upgrade()
    await database.run_write(lambda conn: None)
    yield database
    await database.dispose()


def beat(worker_id: str, processed: int = 0) -> dict:
    return {"worker_id": worker_id, "started_at": T0, "seen_at": T0, "pid": 1, "processed": processed}


async def workers(db: Database) -> dict[str, int]:
    async with db.sessions() as s:
        return {b.worker_id: b.processed for b in (await s.execute(select(WorkerHeartbeat))).scalars()}


async def test_commits_on_return_and_rolls_back_on_raise(db: Database) -> None:
    assert await db.run_write(lambda conn: conn.execute(BEATS.insert().values(**beat("a"))).rowcount) == 1

    def half_then_fail(conn: Connection) -> None:
        conn.execute(BEATS.insert().values(**beat("b")))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.run_write(half_then_fail)
    assert await workers(db) == {"a": 0}


async def test_concurrent_writers_each_get_their_own_outcome(db: Database) -> None:
    def add(name: str, fail: bool) -> int:
        def write(conn: Connection) -> int:
            conn.execute(BEATS.insert().values(**beat(name)))
            if fail:
                raise ValueError(name)
            return len(name)

        return write  # type: ignore[return-value]

    names = [f"w{i}" for i in range(20)]
    results = await asyncio.gather(
        *(db.run_write(add(n, i % 3 == 0)) for i, n in enumerate(names)),  # type: ignore[arg-type]
        return_exceptions=True,
    )
    for i, (name, got) in enumerate(zip(names, results, strict=True)):
        if i % 3 == 0:
            assert isinstance(got, ValueError) and str(got) == name
        else:
            assert got == len(name)
    assert sorted(await workers(db)) == sorted(n for i, n in enumerate(names) if i % 3)


async def test_async_writers_and_thread_writers_interleave(db: Database) -> None:
    async def via_session(i: int) -> None:
        async with db.begin_write() as s:
            s.add(WorkerHeartbeat(**beat(f"s{i}")))

    await asyncio.gather(
        *(via_session(i) for i in range(10)),
        *(
            db.run_write(lambda conn, i=i: conn.execute(BEATS.insert().values(**beat(f"t{i}"))))
            for i in range(10)
        ),
    )
    assert len(await workers(db)) == 20


async def test_in_memory_database_uses_the_async_engine() -> None:
    db = Database("sqlite+aiosqlite://")
    try:
        await db.upgrade()
        await db.run_write(lambda conn: conn.execute(BEATS.insert().values(**beat("m"))))
        assert await workers(db) == {"m": 0}
    finally:
        await db.dispose()


async def commits_while(db: Database, writes: Callable[[], Awaitable[Any]]) -> int:
    """How many transactions `run_write` commits (on the loop or the writer thread) while `writes()` runs."""
    commits = 0

    def count(conn: Connection) -> None:
        nonlocal commits
        if conn.engine in (db._loop_engine, db._writer_engine):
            commits += 1

    event.listen(Engine, "commit", count)
    try:
        await writes()
    finally:
        event.remove(Engine, "commit", count)
    return commits


async def test_writes_that_may_linger_share_one_commit(db: Database) -> None:
    def writes() -> Awaitable[Any]:
        return asyncio.gather(
            *(
                db.run_write(
                    lambda conn, i=i: conn.execute(BEATS.insert().values(**beat(f"g{i}"))), linger=0.05
                )
                for i in range(10)
            )
        )

    assert await commits_while(db, writes) == 1
    assert sorted(await workers(db)) == sorted(f"g{i}" for i in range(10))


async def test_a_write_that_may_not_wait_takes_the_lingering_ones_along(db: Database) -> None:
    lingering = asyncio.ensure_future(
        db.run_write(lambda conn: conn.execute(BEATS.insert().values(**beat("late"))), linger=3600)
    )
    await asyncio.sleep(0)  # queued

    def urgent() -> Awaitable[Any]:
        return db.run_write(lambda conn: conn.execute(BEATS.insert().values(**beat("now"))))

    assert await commits_while(db, urgent) == 1
    assert lingering.done()  # written in the same commit, not an hour later
    assert sorted(await workers(db)) == ["late", "now"]


async def test_one_failing_write_of_a_group_costs_the_others_nothing(db: Database) -> None:
    def fails(conn: Connection) -> None:
        conn.execute(BEATS.insert().values(**beat("bad")))
        raise ValueError("bad")

    ok = [
        db.run_write(lambda conn, i=i: conn.execute(BEATS.insert().values(**beat(f"ok{i}"))), linger=1)
        for i in range(3)
    ]
    results = await asyncio.gather(*ok, db.run_write(fails, linger=1), return_exceptions=True)
    assert isinstance(results[-1], ValueError)
    assert sorted(await workers(db)) == ["ok0", "ok1", "ok2"]


async def test_a_cancelled_write_that_has_not_started_is_not_run(db: Database) -> None:
    queued = asyncio.ensure_future(
        db.run_write(lambda conn: conn.execute(BEATS.insert().values(**beat("never"))), linger=3600)
    )
    await asyncio.sleep(0)
    queued.cancel()
    await db.run_write(lambda conn: conn.execute(BEATS.insert().values(**beat("yes"))))
    assert await workers(db) == {"yes": 0}


async def test_dispose_writes_what_lingers(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/linger.db")
    await db.upgrade()
    pending = asyncio.ensure_future(
        db.run_write(lambda conn: conn.execute(BEATS.insert().values(**beat("kept"))), linger=3600)
    )
    await asyncio.sleep(0)
    await db.dispose()
    assert pending.done() and pending.exception() is None
    reopened = Database(f"sqlite+aiosqlite:///{tmp_path}/linger.db")
    try:
        assert await workers(reopened) == {"kept": 0}
    finally:
        await reopened.dispose()


async def test_a_write_runs_on_the_event_loop_when_the_lock_is_free(db: Database) -> None:
    def where(conn: Connection) -> str:
        conn.execute(BEATS.insert().values(**beat("here")))
        return threading.current_thread().name

    assert await db.run_write(where) == threading.current_thread().name
    assert await workers(db) == {"here": 0}


async def test_a_write_that_finds_another_process_holding_the_lock_waits_off_the_loop(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "rw.db", isolation_level=None)  # a connection of its own
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO worker_heartbeats VALUES ('other', '2026-03-01', '2026-03-01', 2, 0)")
    threads: list[str] = []

    def write(name: str) -> Callable[[Connection], None]:
        def fn(conn: Connection) -> None:
            threads.append(threading.current_thread().name)
            conn.execute(BEATS.insert().values(**beat(name)))

        return fn

    waiting = asyncio.gather(db.run_write(write("a")), db.run_write(write("b")))
    ticks = 0
    for _ in range(20):  # the loop keeps running while the writes wait for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks == 20 and not waiting.done()
    other.execute("COMMIT")
    other.close()
    await waiting
    assert threads and all(t.startswith("crm-mcp-sqlite-writer") for t in threads)
    assert sorted(await workers(db)) == ["a", "b", "other"]


async def test_the_writer_thread_checkpoints_the_wal_after_writes_on_the_loop(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connection never checkpoints (a checkpoint fsyncs); without the writer
    thread's checkpoints its WAL would grow by every write's pages (here about 600)."""
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY_S", 0.0)
    for i in range(200):
        await db.run_write(
            lambda conn, i=i: conn.execute(BEATS.insert().values(**beat(f"{i:04d}" + "x" * 6000)))
        )
        if db._checkpointing is not None:
            await db._checkpointing
    probe = sqlite3.connect(tmp_path / "rw.db")
    try:
        _busy, wal_frames, _checkpointed = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        probe.close()
    assert wal_frames < 50
    assert len(await workers(db)) == 200

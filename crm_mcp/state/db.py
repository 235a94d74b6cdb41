"""Engine, sessions and migrations for SQLite (default) and PostgreSQL.

SQLite needs care to be a safe outbox: WAL so readers never block the writer, a busy timeout so
a second process waits instead of failing, and `BEGIN IMMEDIATE` for writes so two claimers take
the write lock *before* reading (a deferred transaction that reads and then writes can fail with
"database is locked" when another writer got in between). The Python driver's own transaction
handling is switched off and SQLAlchemy emits BEGIN itself, as the SQLAlchemy docs describe for
aiosqlite. Within one process SQLite writes are additionally serialized with an asyncio lock.

Hot-path writes (claims, checkpoints, successes) can go through `run_write`: on a SQLite file a
whole transaction runs as one synchronous function on a pysqlite connection of its own.
aiosqlite makes every driver call (cursor, execute, fetch, close; BEGIN and COMMIT included) a
round trip to its thread, a few of them per statement at ~0.5 ms each on a small VM, all while the
write lock is held; one synchronous function per transaction is what lets several workers' tasks
share the single SQLite writer.

Where it runs: on the event loop's own thread when the write lock is free, which it is unless
another process holds it (this process's writers take turns on an asyncio lock first). Such a
write never waits: its connection's busy timeout is 0 and WAL mode needs no fsync at COMMIT. If
SQLite answers "locked", the transaction is rolled back and the write goes to the writer thread,
whose connection waits for the lock (busy timeout 5 s) while the loop goes on. A second thread
for every write cost more than the write: the loop and the writer took the interpreter from each
other at every socket call (`python bench/outbox.py`, C = 32: engine CPU per CRM request 1.39 to
1.46x the bare connector's with every write on the thread, 1.19 to 1.28x with writes on the loop).
The loop's connection never checkpoints the WAL itself (a checkpoint fsyncs): the writer thread
does it, at most once a second after writes on the loop.

Writes commit in groups: the writes that queue while the writer is busy (or while a write that
may wait, `linger`, waits for company) run in one transaction, since BEGIN IMMEDIATE and COMMIT
with their driver and pool work are about half of a small write's cost. Each caller still gets
its own outcome: if any write of a group raises (or the commit fails) the group is rolled back
and each of its writes is run again alone, in its own transaction, as if never grouped.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from crm_mcp.state.files import private_dir, private_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_IMMEDIATE = "crm_mcp_begin_immediate"
_MIGRATION_LOCK = 0x63726D6D6370  # "crmmcp": one advisory lock id for schema migrations
log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 1.0  # how often the writer thread checkpoints the WAL after writes on the loop
T = TypeVar("T")


def default_sqlite_url(state_dir: Path) -> str:
    """The embedded default database: one SQLite file in the user's state directory."""
    return f"sqlite+aiosqlite:///{(Path(state_dir) / 'crm-mcp.db').resolve()}"


class Database:
    """One engine plus its session factory; the only place that knows backend differences."""

    def __init__(self, url: str, *, connect_args: dict[str, Any] | None = None, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine: AsyncEngine = create_async_engine(url, connect_args=connect_args or {}, echo=echo)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )
        self._write_lock: asyncio.Lock | None = None
        self._connect_args = dict(connect_args or {})
        self._writer: ThreadPoolExecutor | None = None
        self._writer_engine: Engine | None = None  # the writer thread's connection
        self._loop_engine: Engine | None = None  # the event loop's connection (busy timeout 0)
        self._checkpointing: asyncio.Future[None] | None = None
        self._checkpointed_at = 0.0  # time.monotonic() of the last checkpoint started
        # Writes waiting for the writer thread, each with its caller's future (see run_write).
        self._queued: list[tuple[Callable[[SyncConnection], Any], asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._sqlite_path = self._file_path()  # the URL never changes; run_write asks per call
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine.sync_engine)

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, or None for PostgreSQL and in-memory SQLite."""
        return self._sqlite_path

    def _file_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        db = self.url.database or ""
        if not db or db == ":memory:" or db.startswith("file:"):
            return None
        return Path(db)

    @asynccontextmanager
    async def begin_write(self) -> AsyncIterator[AsyncSession]:
        """A session inside a write transaction, committed on success and rolled back on error.

        On SQLite the transaction starts with BEGIN IMMEDIATE (the write lock is taken up front),
        so concurrent claimers are serialized across processes, and an in-process lock keeps this
        process's own tasks from queueing on the busy timeout.
        """
        if not self.is_sqlite:
            async with self.sessions() as session, session.begin():
                yield session
            return
        # The lock covers BEGIN IMMEDIATE .. COMMIT/ROLLBACK only: closing the session (the pool's
        # reset of the connection, one more driver round trip) happens after it is released.
        async with self.sessions() as session, self._lock(), session.begin():
            # Procure the connection first, flagged, so the "begin" hook emits IMMEDIATE.
            await session.connection(execution_options={_IMMEDIATE: True})
            yield session

    async def run_write(self, fn: Callable[[SyncConnection], T], *, linger: float = 0.0) -> T:
        """Run `fn(connection)` inside a write transaction (committed if it returns, rolled back
        if it raises) and return its result.

        `fn` is synchronous and must do nothing but database work on the connection it is given
        (Core statements, or an ORM `Session(bind=connection)`): it may be run a second time
        after a rollback (see the module doc). On a SQLite file it runs on this database's writer
        thread, under the same write lock and BEGIN IMMEDIATE as `begin_write`, in one
        transaction with the other writes queued meanwhile; elsewhere it runs through the async
        engine's connection. `linger`: seconds this write may wait for others to share its
        commit (a write that is not waited on by anything urgent, e.g. an outcome record); any
        write that may not wait takes the waiting ones along at once.
        """
        if not self.is_sqlite or self.sqlite_path is None:
            async with self.begin_write() as session:
                conn = await session.connection()
                return await conn.run_sync(fn)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append((fn, future))
        if linger <= 0:
            self._flush_soon()
        elif self._flush_timer is None and self._flushing is None:
            self._flush_timer = loop.call_later(linger, self._flush_soon)
        return await future

    def _flush_soon(self) -> None:
        """Start the writer on what is queued, unless it is at work (it takes the queue next)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._flushing is None and self._queued:
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        """Run the queued writes in groups until none is left; each caller gets its outcome."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-mcp-sqlite-writer")
        loop = asyncio.get_running_loop()
        group: list[tuple[Callable[[SyncConnection], Any], asyncio.Future[Any]]] = []
        try:
            while self._queued:
                group = [(fn, f) for fn, f in self._queued if not f.done()]  # done: caller cancelled
                self._queued = []
                if not group:
                    continue
                fns = [fn for fn, _ in group]
                async with self._lock():
                    outcomes = self._write_group(fns, self._write_on_loop)
                    if len(outcomes) < len(fns):  # another process holds the lock: wait off the loop
                        rest = fns[len(outcomes) :]
                        outcomes += await loop.run_in_executor(
                            self._writer, self._write_group, rest, self._write_in_thread
                        )
                self._checkpoint_soon(loop)
                for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                group = []
        except BaseException as exc:  # the writer thread is gone, or this task was cancelled
            error = exc if isinstance(exc, Exception) else RuntimeError(f"the writer stopped: {exc!r}")
            for _, future in (*group, *self._queued):
                if not future.done():
                    future.set_exception(error)
            self._queued = []
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flushing = None

    def _write_group(
        self, fns: Sequence[Callable[[SyncConnection], Any]], write: Callable[[Any], Any]
    ) -> list[tuple[bool, Any]]:
        """All of `fns` in one transaction through `write`; if that fails, each one alone.

        Returns an outcome for each of `fns`, or for the first few only if `write` found the
        database locked (`_Locked`, only `_write_on_loop` raises it) before the rest could run."""
        if len(fns) > 1:
            try:
                results = write(lambda conn: [fn(conn) for fn in fns])
            except _Locked:
                return []
            except Exception:  # rolled back: find out whose it was, each write on its own
                results = None
            if results is not None:
                return [(True, result) for result in results]
        outcomes: list[tuple[bool, Any]] = []
        for fn in fns:
            try:
                outcomes.append((True, write(fn)))
            except _Locked:
                break
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    def _write_in_thread(self, fn: Callable[[SyncConnection], T]) -> T:
        """On the writer thread: `fn` in a transaction, waiting for the write lock if need be."""
        if self._writer_engine is None:
            self._writer_engine = self._sqlite_engine(busy_timeout_ms=5000)
        return _transaction(self._writer_engine, fn)

    def _write_on_loop(self, fn: Callable[[SyncConnection], T]) -> T:
        """On the event loop: `fn` in a transaction if the write lock can be had at once; else
        (another process has it) roll back and raise `_Locked`, having waited for nothing."""
        if self._loop_engine is None:
            self._loop_engine = self._sqlite_engine(busy_timeout_ms=0, autocheckpoint=False)
        try:
            return _transaction(self._loop_engine, fn)
        except OperationalError as exc:
            code = getattr(exc.orig, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _Locked from exc
            raise

    def _sqlite_engine(self, *, busy_timeout_ms: int, autocheckpoint: bool = True) -> Engine:
        """A one-connection synchronous engine on this database's file, for `run_write`."""
        engine = create_engine(
            self.url.set(drivername="sqlite+pysqlite"), connect_args=self._connect_args, pool_size=1
        )
        _install_sqlite_hooks(engine, busy_timeout_ms=busy_timeout_ms, autocheckpoint=autocheckpoint)
        return engine

    def _checkpoint_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """After writes on the loop: have the writer thread checkpoint the WAL (a PASSIVE
        checkpoint: it waits for no one, and no writer waits for it), at most once a second."""
        now = time.monotonic()
        if self._checkpointing is not None or now - self._checkpointed_at < CHECKPOINT_EVERY_S:
            return
        self._checkpointed_at = now
        self._checkpointing = loop.run_in_executor(self._writer, self._checkpoint)
        self._checkpointing.add_done_callback(self._checkpoint_done)

    def _checkpoint(self) -> None:
        if self._writer_engine is None:
            self._writer_engine = self._sqlite_engine(busy_timeout_ms=5000)
        with self._writer_engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").close()

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpointing = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("WAL checkpoint failed: %s", future.exception())

    def _lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    async def upgrade(self) -> None:
        """Migrate to the newest schema (creating the database file's directory if needed).

        Safe to call on every start: at head it does nothing. A SQLite file is created owner-only
        (0600) before SQLite opens it, so its WAL and shared-memory files, which SQLite creates
        with the database file's mode, are owner-only too; an existing one is tightened.
        """
        path = self.sqlite_path
        if path is not None:
            private_dir(path.parent, tighten_existing=False)
            for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if file == path or file.exists():
                    private_file(file)
        async with self.engine.connect() as conn:
            # Two processes starting at once must not both migrate: take the write lock
            # (SQLite) or an advisory lock (PostgreSQL) before alembic reads the version.
            await conn.execution_options(**{_IMMEDIATE: True})
            async with conn.begin():
                if not self.is_sqlite:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                await conn.run_sync(_run_alembic_upgrade)

    async def current_revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def dispose(self) -> None:
        if self._queued:  # lingering writes are written, not dropped
            self._flush_soon()
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        loop_engine, self._loop_engine = self._loop_engine, None
        if loop_engine is not None:
            loop_engine.dispose()
        writer, self._writer = self._writer, None
        if writer is not None:
            engine, self._writer_engine = self._writer_engine, None
            if engine is not None:  # its connection belongs to the writer thread: close it there
                await asyncio.get_running_loop().run_in_executor(writer, engine.dispose)
            writer.shutdown(wait=True)
        await self.engine.dispose()


def alembic_config(connection: SyncConnection | None = None) -> Any:
    """An alembic Config built in code: no alembic.ini is needed on disk."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run_alembic_upgrade(connection: SyncConnection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


def _current_revision(connection: SyncConnection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _transaction(engine: Engine, fn: Callable[[SyncConnection], T]) -> T:
    """`fn(connection)` in a BEGIN IMMEDIATE transaction: committed if it returns."""
    with engine.connect() as conn:
        conn.execution_options(**{_IMMEDIATE: True})
        with conn.begin():
            return fn(conn)


class _Locked(Exception):
    """The write lock was held by another process; nothing was written."""


def _install_sqlite_hooks(
    engine: Engine, *, busy_timeout_ms: int = 5000, autocheckpoint: bool = True
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the sqlite3 driver from issuing its own BEGIN; SQLAlchemy does it below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            _ensure_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if not autocheckpoint:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: SyncConnection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _ensure_wal(cursor: Any) -> None:
    """Switch a database to WAL once (the mode is stored in the file).

    The switch needs an exclusive lock and SQLite does not wait on the busy handler for it, so
    processes creating the same new database at the same moment retry briefly. This only ever
    happens on a database's very first connections.
    """
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.02)  # sync hook; only during a first-start race

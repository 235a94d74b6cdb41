"""Engine, sessions and migrations for SQLite (default) and PostgreSQL.

SQLite needs care to be a safe outbox: WAL so readers never block the writer, a busy timeout so
a second process waits instead of failing, and `BEGIN IMMEDIATE` for writes so two claimers take
the write lock *before* reading (a deferred transaction that reads and then writes can fail with
"database is locked" when another writer got in between). The Python driver's own transaction
handling is switched off and SQLAlchemy emits BEGIN itself, as the SQLAlchemy docs describe for
aiosqlite. Within one process SQLite writes are additionally serialized with an asyncio lock.

Hot-path writes (claims, checkpoints, successes) can go through `run_write`: on a SQLite file a
whole transaction runs as one synchronous function on a dedicated writer thread with its own
pysqlite connection. aiosqlite makes every driver call (cursor, execute, fetch, close; BEGIN and
COMMIT included) a round trip to its thread, a few of them per statement at ~0.5 ms each on a
small VM, all while the write lock is held; one hop per transaction instead is what lets several
workers' tasks share the single SQLite writer.

The writer thread commits in groups: the writes that queue while it is busy (or while a write
that may wait, `linger`, waits for company) run in one transaction, since BEGIN IMMEDIATE and
COMMIT with their driver and pool work are about half of a small write's cost. Each caller still
gets its own outcome: if any write of a group raises (or the commit fails) the group is rolled
back and each of its writes is run again alone, in its own transaction, as if never grouped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection as SyncConnection
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from crm_mcp.state.files import private_dir, private_file

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_IMMEDIATE = "crm_mcp_begin_immediate"
_MIGRATION_LOCK = 0x63726D6D6370  # "crmmcp": one advisory lock id for schema migrations
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
        self._writer_engine: Engine | None = None
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
                async with self._lock():
                    outcomes = await loop.run_in_executor(
                        self._writer, self._write_group, [fn for fn, _ in group]
                    )
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

    def _write_group(self, fns: Sequence[Callable[[SyncConnection], Any]]) -> list[tuple[bool, Any]]:
        """On the writer thread: all of `fns` in one transaction; if that fails, each one alone."""
        if len(fns) > 1:
            try:
                results = self._write_in_thread(lambda conn: [fn(conn) for fn in fns])
            except Exception:  # rolled back: find out whose it was, each write on its own
                results = None
            if results is not None:
                return [(True, result) for result in results]
        outcomes: list[tuple[bool, Any]] = []
        for fn in fns:
            try:
                outcomes.append((True, self._write_in_thread(fn)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    def _write_in_thread(self, fn: Callable[[SyncConnection], T]) -> T:
        if self._writer_engine is None:
            url = self.url.set(drivername="sqlite+pysqlite")
            self._writer_engine = create_engine(url, connect_args=self._connect_args, pool_size=1)
            _install_sqlite_hooks(self._writer_engine)
        with self._writer_engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                return fn(conn)

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


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the sqlite3 driver from issuing its own BEGIN; SQLAlchemy does it below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=5000")
            _ensure_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
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

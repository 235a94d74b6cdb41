"""Retention: what is done and old is deleted, in small batches, so the tables stay bounded.

Pruned once older than the retention age (`CRM_MCP_RETENTION_DAYS`, default 30):
- succeeded operations (by when they succeeded), with their `sync_log` rows and the resolved
  dead-letter entry of one that was retried and then succeeded;
- processed inbox events (by when they were processed).

Kept whatever their age: pending and in-flight operations; dead operations, their dead letter and
their whole history, until the dead letter is retried (then the operation is live again, and
pruned once it succeeds and ages) or resolved; unprocessed inbox events. An operation row carries
its idempotency key, so the age is never shorter than `MIN_KEY_AGE` (72 h): a client's replay
within that window still finds the first operation instead of creating a second one.

Each batch is its own short transaction, so pruning never holds the write lock (SQLite) or many
row locks (PostgreSQL) for long, and several workers pruning at once merely find less to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select

from crm_mcp.state.db import Database
from crm_mcp.state.models import DeadLetter, InboxEvent, SyncLog, SyncOperation

MIN_KEY_AGE = timedelta(hours=72)
BATCH = 500


@dataclass
class Pruned:
    operations: int = 0
    sync_log: int = 0
    dead_letters: int = 0
    inbox_events: int = 0

    @property
    def total(self) -> int:
        return self.operations + self.sync_log + self.dead_letters + self.inbox_events


def cutoff(now: datetime, age: timedelta) -> datetime:
    """The oldest time kept: `age` back from `now`, but never less than MIN_KEY_AGE."""
    return now - max(age, MIN_KEY_AGE)


async def prune(
    db: Database, *, now: datetime, age: timedelta, batch: int = BATCH, max_batches: int | None = None
) -> Pruned:
    """Delete what is older than `age` (see the module docstring), `batch` rows per transaction,
    until nothing old is left (or `max_batches` batches of each kind ran). Returns the counts."""
    before = cutoff(now, age)
    done = Pruned()
    rounds = 0
    while max_batches is None or rounds < max_batches:
        rounds += 1
        ops, logs, letters = await db.run_write(lambda conn: _prune_operations(conn, before, batch))
        done.operations += ops
        done.sync_log += logs
        done.dead_letters += letters
        if ops < batch:
            break
    rounds = 0
    while max_batches is None or rounds < max_batches:
        rounds += 1
        events = await db.run_write(lambda conn: _prune_inbox(conn, before, batch))
        done.inbox_events += events
        if events < batch:
            break
    return done


def _prune_operations(conn: Connection, before: datetime, batch: int) -> tuple[int, int, int]:
    ids = list(
        conn.execute(
            select(SyncOperation.id)
            .where(SyncOperation.status == "succeeded", SyncOperation.updated_at < before)
            .limit(batch)
        ).scalars()
    )
    if not ids:
        return 0, 0, 0
    logs = conn.execute(delete(SyncLog).where(SyncLog.operation_id.in_(ids))).rowcount
    letters = conn.execute(delete(DeadLetter).where(DeadLetter.operation_id.in_(ids))).rowcount
    ops = conn.execute(
        delete(SyncOperation).where(SyncOperation.id.in_(ids), SyncOperation.status == "succeeded")
    ).rowcount
    return int(ops), int(logs), int(letters)


def _prune_inbox(conn: Connection, before: datetime, batch: int) -> int:
    ids = list(
        conn.execute(
            select(InboxEvent.id)
            .where(InboxEvent.processed_at.is_not(None), InboxEvent.processed_at < before)
            .limit(batch)
        ).scalars()
    )
    if not ids:
        return 0
    return int(conn.execute(delete(InboxEvent).where(InboxEvent.id.in_(ids))).rowcount)

"""The outbox: durable, idempotent, leased delivery of local changes to CRMs.

A tool writes its local record and `enqueue`s the operation in the same transaction, so either
both exist or neither does. Workers `claim_due` operations under a lease; a worker that dies
simply lets the lease expire and another worker claims the operation again (at-least-once).
Every attempt is logged; an operation that runs out of time or fails for good becomes a dead
letter with its whole error history, and `retry_dead` puts it back. Every function takes `now`
explicitly so tests drive time instead of waiting for it.

Each operation also carries `read_before_create`, which says whether its next attempt must look
for what it creates in the CRM before creating it (the guard against a duplicate when an earlier
attempt's write landed unrecorded). It starts False only for an operation queued `fresh`, and is
set for good, in the same write as the state change that reveals it, whenever an attempt may have
written what its stored progress does not record: a claim that takes over an expired lease (that
attempt started and never recorded an outcome: a crash, a kill), a failure after which the
request may have been processed, a stop in the middle of a handler, a retried dead letter. Nothing
ever sets it back, so no reset of `attempts` can make an attempt skip a guard it needs.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Connection,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from crm_mcp.errors import (
    CircuitOpenError,
    ConnectorError,
    CRMError,
    IdempotencyError,
    RateLimitedError,
    StateError,
    redact,
)
from crm_mcp.state.db import Database
from crm_mcp.state.models import DeadLetter, SyncLog, SyncOperation, new_id

DEFAULT_DEADLINE = timedelta(hours=24)
# A bound on what one operation may store: the tools bound each value far below it; this keeps
# any other writer (a repair, an automation, a bug) from filling the outbox with one payload.
MAX_PAYLOAD_BYTES = 1024 * 1024


class LeaseLostError(StateError):
    """Another worker owns this operation now (our lease expired); stop and let it finish."""

    hint = "The operation was reclaimed by another worker after its lease expired; nothing to do."


def request_hash(action: str, connection: str, payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of what is asked for: same request, same hash."""
    canonical = json.dumps(
        {"action": action, "connection": connection, "payload": payload},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_payload_size(action: str, payload: dict[str, Any]) -> None:
    """Refuse a payload larger than MAX_PAYLOAD_BYTES as JSON.

    Raises:
        StateError: the payload is too large to store.
    """
    size = len(json.dumps(payload, separators=(",", ":"), default=str).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise StateError(
            f"the {action} operation is {size} bytes; an operation may store {MAX_PAYLOAD_BYTES}",
            hint="Shorten the values (notes, custom fields) and call again.",
        )


def key_reused(key: str, connection: str, *, used_by: tuple[str, str, str]) -> IdempotencyError:
    """The error for a key already used for another request. It names the earlier operation only
    when that one is on the caller's own connection: keys are global, and the name or operation id
    of another connection is not the caller's to see."""
    action, used_connection, op_id = used_by
    earlier = f" ({action}, operation {op_id})" if used_connection == connection else ""
    return IdempotencyError(
        f"idempotency key {key!r} was already used for a different request{earlier}; "
        "use a new key for a different request"
    )


async def enqueue(
    session: AsyncSession,
    *,
    idempotency_key: str,
    connection: str,
    action: str,
    payload: dict[str, Any],
    entity_type: str,
    entity_id: str,
    now: datetime,
    deadline: timedelta = DEFAULT_DEADLINE,
    fresh: bool = False,
) -> tuple[SyncOperation, bool]:
    """Add an operation to the outbox (caller commits). Returns (operation, created).

    Replaying the same key with the same request returns the first operation; the same key with
    a different request is refused, because silently dropping either would lose data.

    `fresh`: the caller vouches that nothing this operation creates can be in the CRM yet (what it
    creates is keyed to a record written in this same transaction, under a new id), so its first
    attempt may create without looking first. A replayed key keeps the operation as it was.

    Raises:
        IdempotencyError: the key was used for a different request.
        StateError: the payload is larger than MAX_PAYLOAD_BYTES.
    """
    check_payload_size(action, payload)
    digest = request_hash(action, connection, payload)
    existing = await _by_key(session, idempotency_key)
    if existing is None:
        op = SyncOperation(
            idempotency_key=idempotency_key,
            request_hash=digest,
            connection=connection,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            deadline_at=now + deadline,
            result={},
            read_before_create=not fresh,
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(op)
        except IntegrityError:  # a concurrent enqueue with the same key won the race
            existing = await _by_key(session, idempotency_key)
            if existing is None:
                raise
        else:
            return op, True
    if existing.request_hash != digest:
        raise key_reused(
            idempotency_key, connection, used_by=(existing.action, existing.connection, existing.id)
        )
    return existing, False


@dataclass(frozen=True)
class NewOperation:
    """One operation for `enqueue_many` (the arguments `enqueue` takes one at a time)."""

    idempotency_key: str
    connection: str
    action: str
    payload: dict[str, Any]
    entity_type: str
    entity_id: str
    fresh: bool = False


_CHUNK = 500  # keys per SELECT ... IN and rows per INSERT: well under SQLite's parameter limit


async def enqueue_many(
    session: AsyncSession,
    items: Sequence[NewOperation],
    *,
    now: datetime,
    deadline: timedelta = DEFAULT_DEADLINE,
) -> list[tuple[str, bool]]:
    """`enqueue` for a batch (caller commits): one SELECT for the keys and one multi-row INSERT per
    chunk instead of a round trip per statement per operation. Returns (operation id, created) per
    item, in order. Same rules as `enqueue`: a known key with the same request is a replay (also
    within the batch), with a different request an IdempotencyError; if a concurrent writer takes
    one of the keys first, the chunk falls back to `enqueue` one by one.
    """
    out: list[tuple[str, bool]] = []
    for first in range(0, len(items), _CHUNK):
        chunk = items[first : first + _CHUNK]
        try:
            async with session.begin_nested():
                out.extend(await _enqueue_chunk(session, chunk, now, deadline))
        except IntegrityError:  # a concurrent enqueue won a key: redo this chunk the careful way
            for item in chunk:
                op, created = await enqueue(session, **vars(item), now=now, deadline=deadline)
                out.append((op.id, created))
    return out


async def _enqueue_chunk(
    session: AsyncSession, chunk: Sequence[NewOperation], now: datetime, deadline: timedelta
) -> list[tuple[str, bool]]:
    rows = await session.execute(
        select(
            SyncOperation.idempotency_key,
            SyncOperation.id,
            SyncOperation.request_hash,
            SyncOperation.action,
            SyncOperation.connection,
        ).where(SyncOperation.idempotency_key.in_([item.idempotency_key for item in chunk]))
    )
    known = {key: (op_id, digest, action, conn) for key, op_id, digest, action, conn in rows.all()}
    out: list[tuple[str, bool]] = []
    new_rows: list[dict[str, Any]] = []
    for item in chunk:
        check_payload_size(item.action, item.payload)
        digest = request_hash(item.action, item.connection, item.payload)
        if item.idempotency_key in known:
            op_id, saved, action, conn = known[item.idempotency_key]
            if saved != digest:
                raise key_reused(item.idempotency_key, item.connection, used_by=(action, conn, op_id))
            out.append((op_id, False))
            continue
        op_id = new_id()
        known[item.idempotency_key] = (op_id, digest, item.action, item.connection)
        columns = {k: v for k, v in vars(item).items() if k != "fresh"}
        new_rows.append(
            {
                **columns,
                "read_before_create": not item.fresh,
                "id": op_id,
                "request_hash": digest,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "deadline_at": now + deadline,
                "result": {},
                "created_at": now,
                "updated_at": now,
            }
        )
        out.append((op_id, True))
    if new_rows:
        await session.execute(insert(SyncOperation), new_rows)
    return out


async def _by_key(session: AsyncSession, key: str) -> SyncOperation | None:
    return (
        await session.execute(select(SyncOperation).where(SyncOperation.idempotency_key == key))
    ).scalar_one_or_none()


async def claim_due(
    db: Database,
    *,
    worker_id: str,
    limit: int,
    lease: timedelta,
    now: datetime,
    exclude: Collection[str] = (),
    per_connection: int | Mapping[str, int] | None = None,
    fair: bool = True,
) -> list[SyncOperation]:
    """Lease up to `limit` due operations to `worker_id`, counting an attempt for each.

    Due means pending with next_attempt_at <= now, or in flight under an expired lease. Taking
    over an expired lease sets `read_before_create`: the attempt that held it started and never
    recorded its outcome, so whatever it wrote is unknown (this write is durable before any
    request of the new attempt). SQLite
    serializes claimers with BEGIN IMMEDIATE; PostgreSQL lets them run side by side and skip
    each other's rows with FOR UPDATE SKIP LOCKED. `exclude`: ids the caller is still working on
    (a worker that claims while others of its operations run must not start a second attempt of
    one of them whose lease ran out meanwhile).

    Fair across connections (tenants): the due operations are ranked within their connection
    (oldest first) and a claim takes every connection's first before any connection's second,
    round robin, so one connection's backlog never holds back another's next operation; with a
    single connection due it still takes the whole `limit`. Only each connection's oldest few are
    read (`_round_robin`), so a claim beside a backlog of 5,000 costs what it costs beside 50.
    `per_connection`: a cap on how many operations of one connection may be in flight at once
    (under an unexpired lease, across all workers, counting what this claim takes), so that a
    connection whose CRM is slow or rate limited cannot hold every slot. On PostgreSQL claimers
    running at the same instant do not see each other's uncommitted claims, so the cap may be
    overshot by what they take together. A mapping caps the connections it names (the worker
    derives one per connection from what its rate limit can keep busy).
    `fair=False`: the plain oldest-first order (for benchmarks comparing the two).
    """
    if isinstance(per_connection, Mapping) and not per_connection:
        per_connection = None
    fair = fair or per_connection is not None

    def claim(conn: Connection) -> list[SyncOperation]:
        if fair:
            rows = _claim_round_robin(conn, now, limit, exclude, per_connection)
        else:
            due = or_(
                and_(_OPS.c.status == "pending", _OPS.c.next_attempt_at <= now),
                and_(_OPS.c.status == "in_flight", _OPS.c.lease_until < now),
            )
            query = select(*_LOCKED).where(due, _NOT_OURS).order_by(*_AGE).limit(limit)
            rows = list(conn.execute(query.with_for_update(skip_locked=True), {"exclude": list(exclude)}))
        if not rows:
            return []
        params = {"ids": [row.id for row in rows], "owner": worker_id, "lease_until": now + lease, "now": now}
        taken = {row.id: row for row in conn.execute(_TAKE, params)}
        return [_detached(taken[row.id]) for row in rows]  # in claim order

    return await db.run_write(claim)


def _detached(row: Any) -> SyncOperation:
    """A row as an operation object, as a session that loaded and committed it would leave it
    (Core rows and one UPDATE ... RETURNING are much cheaper than the ORM's load and flush, and a
    claim runs all the time)."""
    op = SyncOperation(**row._mapping)
    make_transient_to_detached(op)
    return op


_AGE = (SyncOperation.next_attempt_at, SyncOperation.created_at)
# One statement holds at most this many per-connection arms (SQLite allows 500 per compound).
_ARMS = 200


def _is_due(op: Any, now: datetime) -> bool:
    """`claim_due`'s `due`, on a row as locked."""
    if op.status == "pending":
        return op.next_attempt_at <= now
    return op.status == "in_flight" and op.lease_until is not None and op.lease_until < now


def _connections_with_pending() -> Any:
    """A skip scan of the claim index: one index seek per connection that has pending work."""
    pending = SyncOperation.status == "pending"
    heads = (
        select(func.min(SyncOperation.connection).label("conn")).where(pending).cte("heads", recursive=True)
    )
    following = (
        select(func.min(SyncOperation.connection))
        .where(pending, SyncOperation.connection > heads.c.conn)
        .scalar_subquery()
    )
    heads = heads.union_all(select(following).where(heads.c.conn.is_not(None)))
    return select(heads.c.conn)


_HEADS = _connections_with_pending()
_CANDIDATE_COLUMNS = (SyncOperation.id, SyncOperation.connection, *_AGE)
_NOT_OURS = SyncOperation.id.not_in(bindparam("exclude", expanding=True))
# Pending candidates skip only those an earlier round of this claim tried (PostgreSQL, when other
# claimers held them): none in a first round, so its statement is the same every time. The
# caller's own operations are in flight, never pending; they matter only under an expired lease.
_NOT_TRIED = SyncOperation.id.not_in(bindparam("tried", expanding=True))
_EXPIRED = (
    select(*_CANDIDATE_COLUMNS)
    .where(SyncOperation.status == "in_flight", SyncOperation.lease_until < bindparam("now"), _NOT_OURS)
    .order_by(*_AGE)
    .limit(bindparam("take"))
)
_LIVE_PER_CONNECTION = (
    select(SyncOperation.connection, func.count())
    .where(SyncOperation.status == "in_flight", SyncOperation.lease_until >= bindparam("now"))
    .group_by(SyncOperation.connection)
)


@functools.cache
def _oldest_due(arms: int, with_expired: bool) -> Any:
    """Each of `arms` connections' (`c0`, `c1`, ...) oldest due pending operations, as one
    ordered, LIMITed range of the claim index per connection, plus (`with_expired`) those under
    an expired lease (few: at most what the workers held). Built once per shape, so that
    SQLAlchemy compiles it once."""
    selects = [_EXPIRED] if with_expired else []
    for i in range(arms):
        selects.append(
            select(*_CANDIDATE_COLUMNS)
            .where(
                SyncOperation.status == "pending",
                SyncOperation.connection == bindparam(f"c{i}"),
                SyncOperation.next_attempt_at <= bindparam("now"),
                _NOT_TRIED,
            )
            .order_by(*_AGE)
            .limit(bindparam("take"))
        )
    parts = [select(*part.subquery().c) for part in selects]  # SQLite: ORDER BY/LIMIT per arm
    return union_all(*parts) if len(parts) > 1 else parts[0]


@functools.cache
def _lock_in_order(n: int) -> Any:
    """The rows with ids `p0`..`p{n-1}`, locked (skipping those another claimer holds), in that
    order, at most `limit`. Found by id alone: a `due` term would let SQLite scan the status index
    instead; `_is_due` checks each row as locked."""
    position = case({bindparam(f"p{i}"): i for i in range(n)}, value=_OPS.c.id)
    ids: list[Any] = [bindparam(f"p{i}") for i in range(n)]
    return (
        select(*_LOCKED)
        .where(_OPS.c.id.in_(ids))
        .order_by(position)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )


def _claim_round_robin(
    conn: Connection,
    now: datetime,
    limit: int,
    exclude: Collection[str],
    per_connection: int | Mapping[str, int] | None,
) -> list[Any]:
    """Lock the rows of up to `limit` due operations in round-robin order (`_round_robin`).

    On PostgreSQL, claimers running side by side read the same candidates; a row another one holds
    is skipped (SKIP LOCKED) and the next candidate taken, and when the candidates run out that way
    the next round reads more, past those tried, until the claim is full or nothing untried is due
    (every round reads only untried rows, so the rounds end; a fixed number of them left a claim
    short while several claimers held each other's candidates). A row another claimer took and
    committed since the candidates were read is no longer due (`_is_due`, on the row as locked).
    On SQLite claimers take turns (BEGIN IMMEDIATE): one round always does."""
    ops: list[Any] = []
    tried: set[str] = set()
    while True:
        wanted = limit - len(ops)
        picked = _round_robin(conn, now, wanted, exclude, tried, per_connection)
        if not picked:
            break
        ids = {f"p{i}": op_id for i, op_id in enumerate(picked)}
        locked = conn.execute(_lock_in_order(len(picked)), {**ids, "limit": wanted})
        ops.extend(op for op in locked if _is_due(op, now))
        if len(ops) >= limit or len(picked) < 2 * wanted:  # enough, or nothing more is due
            break
        tried.update(picked)
    return ops


def _round_robin(
    conn: Connection,
    now: datetime,
    limit: int,
    exclude: Collection[str],
    tried: Collection[str],
    per_connection: int | Mapping[str, int] | None,
) -> list[str]:
    """Ids of up to 2 x `limit` due operations in round-robin order across connections: every
    connection's oldest before any connection's second (`turn`), then by age.

    The cost does not grow with the backlog: the connections with pending work come from a skip
    scan of the (status, connection, ...) index and each one's oldest due operations from one
    range of it (`_oldest_due`). `per_connection`: operations in flight under a live lease count
    as turns their connection has taken already. `exclude`: not to be taken over from an expired
    lease (the caller's own); `tried`: read by an earlier round of this claim, not to read again."""
    connections = [c for c in conn.execute(_HEADS).scalars() if c is not None]
    take = 2 * limit
    params: dict[str, Any] = {"now": now, "take": take, "exclude": [*exclude, *tried], "tried": list(tried)}
    rows: list[Any] = []
    for first in range(0, max(len(connections), 1), _ARMS):
        chunk = connections[first : first + _ARMS]
        arms = {f"c{i}": c for i, c in enumerate(chunk)}
        rows.extend(conn.execute(_oldest_due(len(chunk), first == 0), {**params, **arms}).all())
    running: dict[str, int] = {}
    if per_connection is not None:
        running = {c: int(n) for c, n in conn.execute(_LIVE_PER_CONNECTION, {"now": now}).all()}
    queues: dict[str, list[Any]] = {}
    for row in sorted(rows, key=lambda r: (r[2], r[3])):
        queues.setdefault(row[1], []).append(row)
    ranked = []
    for c, queue in queues.items():
        cap = per_connection.get(c) if isinstance(per_connection, Mapping) else per_connection
        for turn, row in enumerate(queue, start=1 + running.get(c, 0)):
            if cap is not None and turn > cap:
                break
            ranked.append((turn, row[2], row[3], row[0]))
    ranked.sort()
    return [op_id for *_, op_id in ranked[:take]]


async def checkpoint(
    db: Database,
    op_id: str,
    result: dict[str, Any],
    *,
    worker_id: str | None = None,
    lease_until: datetime | None = None,
    progress: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge step progress into the operation's `result` so a retry resumes after the last step.

    Only while the lease is ours (in flight, and owned by `worker_id` when given); optionally
    extends the lease. Returns the merged progress; raises LeaseLostError otherwise.

    `progress`: the progress as the lease holder has it (what it claimed plus its own
    checkpoints, perhaps not stored yet: while `worker_id` holds the lease nobody else writes it). With it and
    `worker_id`, the merge happens here and the write is one conditional UPDATE whose row count
    says whether the lease is still ours, instead of a locking read and an ORM flush.
    """
    if progress is not None and worker_id is not None:
        merged = {**progress, **result}
        params = {"op_id": op_id, "owner": worker_id, "new_result": merged, "new_lease_until": lease_until}
        statement = _CHECKPOINT if lease_until is None else _CHECKPOINT_EXTEND
        if await db.run_write(lambda conn: _rowcount(conn.execute(statement, params))) != 1:
            raise LeaseLostError(f"operation {op_id} is no longer leased by {worker_id}")
        return merged
    async with db.begin_write() as session:
        op = await session.get(SyncOperation, op_id, with_for_update=True)
        if op is None or op.status != "in_flight" or (worker_id is not None and op.lease_owner != worker_id):
            raise LeaseLostError(f"operation {op_id} is no longer leased by {worker_id or 'this worker'}")
        merged = {**(op.result or {}), **result}
        op.result = merged
        if lease_until is not None:
            op.lease_until = lease_until
    return merged


_OPS = cast(Table, SyncOperation.__table__)
_LOGS = cast(Table, SyncLog.__table__)
# What a claim reads of the rows it locks: enough to check that each is still due (`_is_due`).
_LOCKED = (_OPS.c.id, _OPS.c.status, _OPS.c.next_attempt_at, _OPS.c.lease_until)
# A claim takes the rows it locked and reads them as taken (SET reads every column as it was
# before the update: an in-flight row is an expired lease, whose attempt never recorded an outcome).
_TAKE = (
    update(_OPS)
    .where(_OPS.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        read_before_create=or_(_OPS.c.read_before_create, _OPS.c.status == "in_flight"),
        status="in_flight",
        lease_owner=bindparam("owner"),
        lease_until=bindparam("lease_until", type_=_OPS.c.lease_until.type),
        attempts=_OPS.c.attempts + 1,
        updated_at=bindparam("now", type_=_OPS.c.updated_at.type),
    )
    .returning(*_OPS.c)
)


# Hot-path statements, built once with bound parameters (op_id, owner, new_*): the operation is
# changed only while it is in flight under `owner`'s lease, and the row count says whether it was.
_LEASED_BY = and_(
    _OPS.c.id == bindparam("op_id"),
    _OPS.c.status == "in_flight",
    _OPS.c.lease_owner == bindparam("owner"),
)
_CHECKPOINT = update(_OPS).where(_LEASED_BY).values(result=bindparam("new_result", type_=_OPS.c.result.type))
_CHECKPOINT_EXTEND = _CHECKPOINT.values(
    lease_until=bindparam("new_lease_until", type_=_OPS.c.lease_until.type)
)
_SUCCEED = (
    update(_OPS)
    .where(_LEASED_BY)
    .values(
        status="succeeded",
        result=bindparam("new_result", type_=_OPS.c.result.type),
        lease_owner=None,
        lease_until=None,
        last_error=None,
        updated_at=bindparam("new_updated_at", type_=_OPS.c.updated_at.type),
    )
)
_LOG_INSERT = insert(_LOGS)
_RELEASE = (
    update(_OPS)
    .where(_LEASED_BY)
    .values(
        status="pending",
        lease_owner=None,
        lease_until=None,
        result=bindparam("new_result", type_=_OPS.c.result.type),
        read_before_create=or_(_OPS.c.read_before_create, bindparam("may_have_written", type_=Boolean())),
        attempts=_OPS.c.attempts - 1,
        next_attempt_at=bindparam("new_updated_at", type_=_OPS.c.next_attempt_at.type),
        updated_at=bindparam("new_updated_at", type_=_OPS.c.updated_at.type),
    )
)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


async def _leased(session: AsyncSession, op: SyncOperation) -> SyncOperation | None:
    row = await session.get(SyncOperation, op.id, with_for_update=True, populate_existing=True)
    if row is None or row.status != "in_flight" or row.lease_owner != op.lease_owner:
        return None
    return row


async def mark_succeeded(
    db: Database,
    op: SyncOperation,
    result: dict[str, Any],
    now: datetime,
    duration_ms: int | None = None,
    *,
    progress: Mapping[str, Any] | None = None,
    also: Sequence[Callable[[Connection], None]] = (),
    linger: float = 0.0,
) -> SyncOperation | None:
    """Record success (merging `result` into the checkpointed progress) and log the attempt.

    Returns None if the lease was lost meanwhile: another worker owns the outcome then.
    `progress`: the progress as the lease holder has it (see `checkpoint`); with it the
    success is one conditional UPDATE plus the log INSERT, and `op` itself is returned, updated.
    `also`: the handler's own writes, run in the same transaction (after the lease check), so
    that they commit with the success or not at all.
    """
    if progress is None:
        return await _mark_succeeded_read(db, op, result, now, duration_ms, also)
    merged = {**progress, **(result or {})}
    params = {"op_id": op.id, "owner": op.lease_owner, "new_result": merged, "new_updated_at": now}
    log = _log_values(op, now, "success", None, duration_ms)

    def write(conn: Connection) -> bool:
        if _rowcount(conn.execute(_SUCCEED, params)) != 1:
            return False
        conn.execute(_LOG_INSERT, log)
        for extra in also:
            extra(conn)
        return True

    if not await db.run_write(write, linger=linger):
        return None
    op.status, op.result, op.last_error, op.updated_at = "succeeded", merged, None, now
    op.lease_owner = op.lease_until = None
    return op


async def _mark_succeeded_read(
    db: Database,
    op: SyncOperation,
    result: dict[str, Any],
    now: datetime,
    duration_ms: int | None,
    also: Sequence[Callable[[Connection], None]],
) -> SyncOperation | None:
    async with db.begin_write() as session:
        row = await _leased(session, op)
        if row is None:
            return None
        row.status = "succeeded"
        row.result = {**(row.result or {}), **(result or {})}
        row.lease_owner = row.lease_until = None
        row.last_error = None
        row.updated_at = now
        session.add(_log(row, now, "success", None, duration_ms))
        if also:
            conn = await session.connection()
            for extra in also:
                await conn.run_sync(extra)
    return row


@dataclass
class Release:
    """A leased operation a stopping worker hands back, with its progress. `may_have_written`:
    its handler was stopped while it ran (a request may have been in flight), not before it began."""

    op_id: str
    progress: Mapping[str, Any]
    may_have_written: bool = True


async def release(db: Database, ops: Sequence[Release], *, worker_id: str, now: datetime) -> None:
    """Make operations leased by `worker_id` due again at once, with their progress stored, so a
    stopped worker's operations need not wait for their leases to expire. The attempt is given
    back: our own stop is not a failure of the operation (a kill, whose lease expires, does count).
    One write; an operation whose lease is no longer ours is left alone."""
    params = [
        {
            "op_id": r.op_id,
            "owner": worker_id,
            "new_result": dict(r.progress),
            "new_updated_at": now,
            "may_have_written": r.may_have_written,
        }
        for r in ops
    ]
    if params:
        await db.run_write(lambda conn: conn.execute(_RELEASE, params))


async def mark_failed(
    db: Database,
    op: SyncOperation,
    error: BaseException,
    now: datetime,
    *,
    retryable: bool,
    retry_at: datetime | None,
    duration_ms: int | None = None,
    progress: Mapping[str, Any] | None = None,
    may_have_written: bool = True,
) -> SyncOperation | None:
    """Reschedule a failed attempt, or move the operation to the dead-letter queue.

    Retryable with a `retry_at` inside the deadline -> pending again. A rate-limit or open-circuit
    wait is a reschedule, not a failed attempt: the attempt counter is given back so backoff does
    not grow while the CRM merely asks us to wait. Anything else -> dead, with every attempt's
    error in the dead letter. Returns None if the lease was lost meanwhile. `progress`: the
    attempt's recorded steps (see `checkpoint`), stored so that the retry resumes after them.
    `may_have_written`: the failure leaves open whether the CRM processed a write the progress
    does not record (a timeout, a 5xx, a reset, an unexpected error): the retry must read before
    it creates (`crm_mcp.sync.context.may_have_written` decides).
    """
    reschedule = isinstance(error, RateLimitedError | CircuitOpenError)
    async with db.begin_write() as session:
        row = await _leased(session, op)
        if row is None:
            return None
        if progress:
            row.result = {**(row.result or {}), **progress}
        if may_have_written:
            row.read_before_create = True
        message = _message(error)
        row.last_error = f"{type(error).__name__}: {message}"
        row.lease_owner = row.lease_until = None
        row.updated_at = now
        if retryable and retry_at is not None and retry_at <= row.deadline_at:
            outcome = "rescheduled" if reschedule else "retry"
            session.add(_log(row, now, outcome, error, duration_ms))
            row.status = "pending"
            row.next_attempt_at = retry_at
            if reschedule:
                row.attempts = max(0, row.attempts - 1)
            return row
        row.status = "dead"
        history = await _error_history(session, row.id)  # before adding this attempt's log
        log = _log(row, now, "dead", error, duration_ms)
        session.add(log)
        history.append(_history_entry(log))
        if not retryable:
            reason = f"Failed permanently ({type(error).__name__}): {message}"
        else:
            reason = (
                f"Gave up after {failed_attempts(history)} attempt(s) (deadline or retry budget spent); "
                f"last error: {message}"
            )
        letter = (
            await session.execute(select(DeadLetter).where(DeadLetter.operation_id == row.id))
        ).scalar_one_or_none()
        if letter is None:
            letter = DeadLetter(operation_id=row.id, retry_count=0)
            session.add(letter)
        letter.connection, letter.action, letter.reason = row.connection, row.action, reason
        letter.error_history = history
        letter.dead_at = now
        letter.retried_at = None
    return row


def failed_attempts(history: Sequence[dict[str, Any]]) -> int:
    """Failed attempts in a dead letter's history: what its reason and its `attempts` both count.
    A rate-limit or open-circuit wait (`rescheduled`) is in the history but is not an attempt."""
    return sum(1 for h in history if h.get("outcome") != "rescheduled")


def _message(error: BaseException) -> str:
    # CRMError messages are redacted at construction; anything else is redacted here.
    return str(error) if isinstance(error, CRMError) else redact(str(error))


def _log(
    op: SyncOperation, now: datetime, outcome: str, error: BaseException | None, duration_ms: int | None
) -> SyncLog:
    return SyncLog(**_log_values(op, now, outcome, error, duration_ms))


def _log_values(
    op: SyncOperation, now: datetime, outcome: str, error: BaseException | None, duration_ms: int | None
) -> dict[str, Any]:
    return dict(
        operation_id=op.id,
        connection=op.connection,
        action=op.action,
        attempt=op.attempts,
        started_at=now - timedelta(milliseconds=duration_ms or 0),
        finished_at=now,
        outcome=outcome,
        error_type=type(error).__name__ if error is not None else None,
        error=_message(error) if error is not None else None,
        status_code=error.status if isinstance(error, ConnectorError) else None,
        duration_ms=duration_ms,
    )


def _history_entry(log: SyncLog) -> dict[str, Any]:
    return {
        "attempt": log.attempt,
        "outcome": log.outcome,
        "error_type": log.error_type,
        "error": log.error,
        "status_code": log.status_code,
        "at": log.finished_at.isoformat(),
    }


async def _error_history(session: AsyncSession, op_id: str) -> list[dict[str, Any]]:
    logs = await session.execute(
        select(SyncLog)
        .where(SyncLog.operation_id == op_id, SyncLog.outcome != "success")
        .order_by(SyncLog.id)
    )
    return [_history_entry(log) for log in logs.scalars()]


async def retry_dead(
    db: Database,
    *,
    ids: Sequence[str] | None = None,
    connection: str | None = None,
    all_: bool = False,
    now: datetime,
    dry_run: bool = False,
    deadline: timedelta = DEFAULT_DEADLINE,
    connections: Collection[str] | None = None,
) -> list[SyncOperation]:
    """Put dead operations back in the queue: attempts reset, a fresh deadline, progress kept.

    Their next attempt reads before it creates (`read_before_create`): whatever killed them, an
    earlier attempt may have written what its progress does not record.

    Selects by operation ids (dead-letter entry ids are accepted too), by connection, or all.
    Returns only the operations that were (or, with dry_run, would be) requeued: an id that is
    pending, in flight or succeeded is left alone, so calling this twice is harmless.
    """
    if not ids and connection is None and not all_:
        raise ValueError("say which dead operations to retry: ids, a connection, or all_=True")
    query = select(SyncOperation).where(SyncOperation.status == "dead")
    if ids:
        entry_ops = select(DeadLetter.operation_id).where(DeadLetter.id.in_(list(ids)))
        query = query.where(or_(SyncOperation.id.in_(list(ids)), SyncOperation.id.in_(entry_ops)))
    if connection is not None:
        query = query.where(SyncOperation.connection == connection)
    if connections is not None:  # a tenant's retry touches only its own connections
        query = query.where(SyncOperation.connection.in_(list(connections)))
    async with db.begin_write() as session:
        ops = list((await session.execute(query.order_by(SyncOperation.created_at))).scalars())
        if dry_run or not ops:
            return ops
        for op in ops:
            op.status, op.attempts, op.next_attempt_at = "pending", 0, now
            op.read_before_create = True
            op.deadline_at, op.updated_at = now + deadline, now
            op.lease_owner = op.lease_until = None
        await session.execute(
            update(DeadLetter)
            .where(DeadLetter.operation_id.in_([op.id for op in ops]), DeadLetter.retried_at.is_(None))
            .values(retried_at=now, retry_count=DeadLetter.retry_count + 1)
        )
    return ops


async def get_operation(session: AsyncSession, op_id: str) -> SyncOperation | None:
    return await session.get(SyncOperation, op_id)


async def list_dead_letters(
    session: AsyncSession,
    *,
    connection: str | None = None,
    connections: Collection[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    include_retried: bool = False,
) -> list[DeadLetter]:
    """Dead letters, newest first; by default only those still dead (not yet retried).
    `connections`: only those of these connections (a tenant's), None for all."""
    query = select(DeadLetter)
    if not include_retried:
        query = query.where(DeadLetter.retried_at.is_(None))
    if connection is not None:
        query = query.where(DeadLetter.connection == connection)
    if connections is not None:
        query = query.where(DeadLetter.connection.in_(list(connections)))
    query = query.order_by(DeadLetter.dead_at.desc(), DeadLetter.id).limit(limit).offset(offset)
    return list((await session.execute(query)).scalars())


async def get_dead_letter(session: AsyncSession, entry_id: str) -> DeadLetter | None:
    """A dead-letter entry by its id, or by its operation's id (agents often hold the latter)."""
    entry = await session.get(DeadLetter, entry_id)
    if entry is None:
        entry = (
            await session.execute(select(DeadLetter).where(DeadLetter.operation_id == entry_id))
        ).scalar_one_or_none()
    return entry

"""The outbox worker: claims due operations, runs their handler, records the outcome.

Handlers are plain async functions keyed by action (``"appointment.create"``), injected by
whoever wires connectors in, so this loop knows nothing about any CRM. Every remote step of a
handler must be safe to repeat on its own (an upsert by natural key, or read-before-create); it
records each finished step with `HandlerContext.checkpoint`, so that a retry resumes after it.
How progress and the lease are kept is in `crm_mcp.sync.context`.

Failure policy: a `CRMError` that says it is retryable is rescheduled with backoff (an explicit
Retry-After or an open breaker's reopen time is honoured); any other `CRMError` is a dead letter
at once; an unexpected exception is assumed transient, retried, and logged with its traceback
(to the logger, never stdout: stdout belongs to the MCP stdio transport).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
from sqlalchemy import delete

from crm_mcp.errors import CircuitOpenError, ConfigurationError, CRMError, RateLimitedError
from crm_mcp.observability.tracing import DeliveryObserver, delivery, in_operation_scope
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation, WorkerHeartbeat
from crm_mcp.sync import backoff
from crm_mcp.sync.context import HandlerContext, may_have_written

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=5)
HEARTBEAT_KEPT = timedelta(days=1)  # a dead worker's heartbeat is shown (not alive) this long
# How long a success record may wait to share a commit with other records and the next claim
# (`Database.run_write(linger=...)`): on SQLite a commit costs about as much as the record's own
# statements. It delays only when the outcome is visible, not any CRM request; a crash in between
# is one more attempt whose outcome went unrecorded, which the guard reads are there for.
RECORD_LINGER = 0.05


def utcnow() -> datetime:
    return datetime.now(UTC)


Handler = Callable[[SyncOperation, HandlerContext], Awaitable[dict[str, Any]]]


class OutboxWorker:
    """Delivers the outbox. Several may run at once (processes or hosts): leases keep them apart."""

    def __init__(
        self,
        db: Database,
        handlers: Mapping[str, Handler],
        *,
        worker_id: str | None = None,
        concurrency: int = 4,
        lease: timedelta = timedelta(seconds=60),
        poll_interval: float = 0.5,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        max_attempts: int | None = None,
        on_change: Callable[[], None] | None = None,
        prefetch: int | None = None,
        metrics: DeliveryObserver | None = None,
        per_connection: int | None = None,
        connection_caps: Callable[[], Mapping[str, int]] | None = None,
        record_linger: float = RECORD_LINGER,
    ) -> None:
        """`on_change` is called whenever operations changed (read caches listen).
        `metrics` observes each attempt's duration and outcome (`crm_mcp.observability`).
        `prefetch`: how many claimed operations the continuous loop keeps waiting for a slot, so a
        freed slot starts the next one without a claim in between (default: `concurrency`, at
        least 8; their leases run while they wait). It claims once half of them are wanted, so a
        claim (a write transaction) takes several operations, not one.
        `record_linger`: seconds the continuous loop lets a success record wait for others (and
        for the next claim) to share one commit; the record holds no slot meanwhile."""
        self.db = db
        self.handlers = dict(handlers)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.concurrency = max(1, concurrency)
        self.prefetch = max(0, prefetch if prefetch is not None else max(8, self.concurrency))
        self._claim_batch = max(1, self.prefetch // 2)
        self.lease = lease
        self.poll_interval = poll_interval
        self.clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff_base, self._backoff_cap = backoff_base, backoff_cap
        self.max_attempts = max_attempts
        self._on_change = on_change
        self._metrics = metrics
        self.per_connection = per_connection  # cap on one connection's operations in flight (claim_due)
        # Without a fixed cap: each connection's own, as many as its rate limit keeps busy.
        self._connection_caps = connection_caps
        self.record_linger = record_linger
        self.processed = 0
        self._started_at: datetime | None = None
        self._last_beat: datetime | None = None

    async def run_once(self) -> int:
        """Claim one batch of due operations and process it; returns how many were processed."""
        await self._heartbeat()
        ops = await outbox.claim_due(
            self.db,
            worker_id=self.worker_id,
            limit=self.concurrency,
            lease=self.lease,
            now=self.clock(),
            per_connection=self._caps(),
        )
        if not ops:
            return 0
        await asyncio.gather(*(self._process(op) for op in ops))
        self.processed += len(ops)
        if self._on_change is not None:
            self._on_change()
        await self._heartbeat(force=True)
        return len(ops)

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Process until nothing is due *now* (retries scheduled later are left alone)."""
        total = 0
        for _ in range(max_rounds):
            done = await self.run_once()
            if done == 0:
                break
            total += done
        return total

    async def drain(self) -> int:
        """Deliver continuously (as `run_forever` does) until nothing is due *now* and nothing is in
        flight; returns how many were processed."""
        return await self._run_continuously(None, until_idle=True)

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Poll and deliver until `stop` is set; a clean stop removes this worker's heartbeat.

        Keeps `concurrency` handlers running, the next operations claimed ahead (`prefetch`), and
        starts one as soon as a slot frees, rather than waiting for a whole batch. On stop, nothing
        more is claimed; what was claimed is delivered and its outcome recorded.
        """
        stop = stop or asyncio.Event()
        logger.info("outbox worker %s started", self.worker_id)
        try:
            await self._run_continuously(stop)
        finally:
            with anyio.CancelScope(shield=True):  # stopped by cancellation too (serve's session end)
                await self._remove_heartbeat()
            logger.info("outbox worker %s stopped after %d operations", self.worker_id, self.processed)

    async def _run_continuously(self, stop: asyncio.Event | None, *, until_idle: bool = False) -> int:
        """The continuous loop. A slot is a CRM conversation: an operation holds one while its
        handler runs, not while its outcome is written or while the next claim is read, so a
        slot goes straight from one operation's last request to the next one's first. Claims run
        in the background and keep up to `prefetch` claimed operations ready beyond the slots."""
        running: dict[asyncio.Future[Any], SyncOperation] = {}  # handlers, one per slot
        recording: dict[asyncio.Future[Any], str] = {}  # outcome writes, holding no slot
        ready: deque[SyncOperation] = deque()  # claimed, waiting for a slot
        claiming: asyncio.Future[list[SyncOperation]] | None = None
        asked = 0  # the limit `claiming` was started with
        total = 0
        nothing_due = False  # the last claim came back short: wait for a reason to look again
        # Every task of the loop reports here when it is done: one wake-up per completion, rather
        # than asyncio.wait() hooking (and unhooking) every running task on every turn.
        finished: deque[asyncio.Future[Any]] = deque()
        wake = asyncio.Event()

        def report(task: asyncio.Future[Any]) -> None:
            finished.append(task)
            wake.set()

        def start(aw: Awaitable[Any]) -> asyncio.Future[Any]:
            task = asyncio.ensure_future(aw)
            task.add_done_callback(report)
            return task

        stop_waiter = start(stop.wait()) if stop is not None else None
        try:
            while True:
                stopping = stop is not None and stop.is_set()
                while ready and len(running) < self.concurrency:  # claimed ones run, stop or not
                    op = ready.popleft()
                    running[start(self._attempt(op, self.record_linger))] = op
                wanted = self.concurrency + self.prefetch - len(running) - len(ready)
                # Claim in batches (a claim is a write transaction, whatever it takes): once
                # half the prefetch is wanted, or at once when a slot would otherwise idle.
                idle_slot = not ready and len(running) < self.concurrency
                if (
                    claiming is None
                    and wanted > 0
                    and (idle_slot or wanted >= self._claim_batch)
                    and not stopping
                    and not nothing_due
                ):
                    busy = {op.id for op in (*running.values(), *ready)} | set(recording.values())
                    claiming, asked = start(self._claim(wanted, busy)), wanted
                if not (running or recording or ready or claiming):
                    if stopping or until_idle:
                        if total:
                            await self._heartbeat(force=True)
                        return total
                    await self._pause(stop or asyncio.Event())
                    nothing_due = False
                    continue
                sleeper = None
                if nothing_due and not until_idle and not stopping and not finished:
                    # Nothing was due: look again after a poll interval even if nothing finishes
                    # (new operations may be enqueued meanwhile).
                    sleeper = start(self._sleep(self.poll_interval))
                try:
                    while not finished:
                        wake.clear()
                        await wake.wait()
                finally:
                    if sleeper is not None and not sleeper.done():
                        sleeper.remove_done_callback(report)  # not a reason to look again
                        sleeper.cancel()
                done = set(finished)
                finished.clear()
                if done - {claiming}:
                    nothing_due = False  # something finished (or the poll interval passed): look again
                if claiming is not None and claiming in done:
                    ops = self._claimed(claiming, until_idle)
                    claiming = None
                    ready.extend(ops)
                    nothing_due = len(ops) < asked
                over = 0  # attempts over: outcome recorded, or nothing of ours to record
                for task in done & running.keys():
                    op = running.pop(task)
                    record = self._settled(task, op.id, "an attempt")
                    if record is None:
                        over += 1
                    else:
                        recording[start(record())] = op.id
                for task in done & recording.keys():
                    self._settled(task, recording.pop(task), "recording its outcome")
                    over += 1
                if over:
                    total += over
                    self.processed += over
                    if self._on_change is not None:
                        self._on_change()
        finally:
            if stop_waiter is not None:
                stop_waiter.cancel()
            if running or recording or ready or claiming is not None:
                # Cancelled (the server's session ended) or failed with work in hand. Shielded:
                # an anyio cancel scope would cancel every await in here again.
                with anyio.CancelScope(shield=True):
                    await self._wind_down(running, recording, ready, claiming)

    async def _wind_down(
        self,
        running: Mapping[asyncio.Future[Any], SyncOperation],
        recording: Mapping[asyncio.Future[Any], str],
        ready: deque[SyncOperation],
        claiming: asyncio.Future[list[SyncOperation]] | None,
    ) -> None:
        """Stop what runs (each attempt hands its operation back with its progress, see
        `_attempt`), let outcome writes finish, and hand back what was claimed but not started."""
        for task in running:
            task.cancel()
        if claiming is not None:
            claiming.cancel()
        await asyncio.gather(*running, *recording, return_exceptions=True)
        unstarted = list(ready)
        if claiming is not None and claiming.done() and not claiming.cancelled() and not claiming.exception():
            unstarted += claiming.result()  # the claim had finished: those are ours too
        await self._release(
            [outbox.Release(op.id, op.result or {}, may_have_written=False) for op in unstarted]
        )

    async def _release(self, ops: list[outbox.Release]) -> None:
        try:
            await outbox.release(self.db, ops, worker_id=self.worker_id, now=self.clock())
        except Exception:
            logger.exception(
                "outbox worker %s: could not hand back %d operation(s); their leases will expire",
                self.worker_id,
                len(ops),
            )

    async def _claim(self, limit: int, busy: set[str]) -> list[SyncOperation]:
        await self._heartbeat()
        # `busy`: ours already (running, waiting or being recorded): if one's lease ran out
        # meanwhile it is still ours to finish, not a second attempt to start.
        return await outbox.claim_due(
            self.db,
            worker_id=self.worker_id,
            limit=limit,
            lease=self.lease,
            now=self.clock(),
            exclude=busy,
            per_connection=self._caps(),
        )

    def _caps(self) -> int | Mapping[str, int] | None:
        if self.per_connection is not None or self._connection_caps is None:
            return self.per_connection
        return self._connection_caps()

    def _claimed(
        self, claiming: asyncio.Future[list[SyncOperation]], until_idle: bool
    ) -> list[SyncOperation]:
        if claiming.cancelled():
            return []
        error = claiming.exception()
        if error is None:
            return claiming.result()
        if until_idle:
            raise error
        logger.error("outbox worker %s: claim failed; retrying after a pause", self.worker_id, exc_info=error)
        return []

    def _settled(self, task: asyncio.Future[Any], op_id: str, what: str) -> Any:
        """A finished task's result (None if it failed or was cancelled; a failure is logged)."""
        if task.cancelled():
            return None
        if task.exception() is not None:
            logger.error(
                "outbox worker %s: operation %s: %s failed; the lease will expire and the operation "
                "be retried",
                self.worker_id,
                op_id,
                what,
                exc_info=task.exception(),
            )
            return None
        return task.result()

    async def _pause(self, stop: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(stop.wait())
        sleeper = asyncio.ensure_future(self._sleep(self.poll_interval))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                task.cancel()

    async def _process(self, op: SyncOperation) -> None:
        record = await self._attempt(op)
        if record is not None:
            await record()

    async def _attempt(self, op: SyncOperation, linger: float = 0.0) -> Callable[[], Awaitable[None]] | None:
        """Run the operation's handler; return the write that records its outcome (None when the
        lease was lost: the outcome is another worker's to record then). Cancelled (the worker
        is stopping), it hands the operation back with its progress, due again at once.
        `linger`: how long a success record may wait to share a commit (`Database.run_write`)."""
        started = time.perf_counter()
        handler = self.handlers.get(op.action)
        ctx = HandlerContext(self.db, op, worker_id=self.worker_id, lease=self.lease, clock=self.clock)
        keeper: asyncio.Future[None] | None = None
        try:
            if handler is None:
                raise ConfigurationError(f"no handler is registered for action {op.action!r}")
            await ctx.keep_lease()  # it may have waited for a slot; reclaimed meanwhile: not ours
            keeper = asyncio.ensure_future(ctx.keep_alive())
            with delivery(op, self._metrics):  # correlation id, linked span, latency histogram
                result = await handler(op, ctx)
        except outbox.LeaseLostError:
            logger.warning("operation %s was reclaimed by another worker; dropping our attempt", op.id)
            return None
        except asyncio.CancelledError:
            await self._release([outbox.Release(op.id, ctx.stored_progress, may_have_written=True)])
            raise
        except Exception as exc:
            return in_operation_scope(
                op, partial(self._failed, op, exc, _elapsed_ms(started), ctx.stored_progress)
            )
        finally:
            if keeper is not None:
                keeper.cancel()
        record = partial(self._succeeded, op, result or {}, _elapsed_ms(started), ctx, linger)
        return in_operation_scope(op, record)

    async def _succeeded(
        self,
        op: SyncOperation,
        result: dict[str, Any],
        duration_ms: int,
        ctx: HandlerContext,
        linger: float = 0.0,
    ) -> None:
        try:
            done = await outbox.mark_succeeded(
                self.db,
                op,
                result,
                self.clock(),
                duration_ms,
                progress=ctx.stored_progress,
                also=ctx.success_writes,
                linger=linger,
            )
        except Exception as exc:
            # The success transaction (with the handler's own writes) was rolled back: record a
            # failed attempt instead, with the progress, so backoff and the dead-letter queue apply.
            logger.warning("operation %s: recording its success failed: %r", op.id, exc)
            await self._failed(op, exc, duration_ms, ctx.stored_progress)
            return
        if done is None:
            logger.warning("operation %s succeeded after its lease was reclaimed", op.id)

    async def _failed(
        self, op: SyncOperation, exc: Exception, duration_ms: int, progress: dict[str, Any] | None = None
    ) -> None:
        now = self.clock()
        if isinstance(exc, CRMError):
            retryable = exc.retryable
            logger.info("operation %s (%s) failed: %s: %s", op.id, op.action, type(exc).__name__, exc)
        else:
            retryable = True
            logger.exception("operation %s (%s) raised an unexpected error", op.id, op.action)
        when = None
        # Out of attempts counts like out of time: no retry_at, so the operation goes dead.
        if retryable and (self.max_attempts is None or op.attempts < self.max_attempts):
            when = backoff.retry_at(
                now,
                op.attempts,
                _server_wait(exc),
                self._rng,
                op.deadline_at,
                base=self._backoff_base,
                cap=self._backoff_cap,
            )
        row = await outbox.mark_failed(
            self.db,
            op,
            exc,
            now,
            retryable=retryable,
            retry_at=when,
            duration_ms=duration_ms,
            progress=progress,
            may_have_written=may_have_written(exc),
        )
        if row is not None and row.status == "dead":
            logger.warning("operation %s (%s) is dead: %s", op.id, op.action, row.last_error)

    async def _heartbeat(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and self._last_beat is not None and now - self._last_beat < HEARTBEAT_EVERY:
            return
        self._started_at = self._started_at or now
        async with self.db.begin_write() as session:
            beat = await session.get(WorkerHeartbeat, self.worker_id)
            if beat is None:
                # Killed workers leave their row; a day later it says nothing any more.
                await session.execute(
                    delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < now - HEARTBEAT_KEPT)
                )
                beat = WorkerHeartbeat(worker_id=self.worker_id, started_at=self._started_at, pid=os.getpid())
                session.add(beat)
            beat.seen_at = now
            beat.processed = self.processed
        self._last_beat = now

    async def _remove_heartbeat(self) -> None:
        try:
            async with self.db.begin_write() as session:
                await session.execute(
                    delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == self.worker_id)
                )
        except Exception:
            logger.exception("could not remove heartbeat of worker %s", self.worker_id)


def _server_wait(exc: BaseException) -> float | None:
    """Seconds the CRM (Retry-After) or our breaker (time until its probe) asked us to wait.

    Both are relative, so they mean the same on every clock (the breaker's own `until` is a
    monotonic reading and is deliberately not used here).
    """
    if isinstance(exc, RateLimitedError | CircuitOpenError) and exc.retry_after is not None:
        return max(0.0, float(exc.retry_after))
    return None


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)

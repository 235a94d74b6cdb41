"""What a handler gets besides its operation: the time, its progress, checkpoints and the lease.

Progress is written behind. `checkpoint` records a finished step in memory; the worker stores it
in the same write that records the attempt's outcome (success or failure), or releases the
operation with it when the worker is stopped. So a step's CRM requests cost no database write of
their own. A hard crash (SIGKILL, power loss) loses the progress since the claim: the retry then
repeats those steps, which is why every step must be safe to repeat by itself (an upsert by
natural key, or read-before-create). It always had to be: a crash can come between the CRM's
answer and any write of ours.

The lease is kept alive apart from the steps: while the handler runs, `keep_alive` renews it every
third of its length (real time), so a slow step (retries, rate-limit waits) cannot outlive it and
let a second worker run the same operation alongside. A renewal also stores the progress. A lost
lease (another worker reclaimed the operation: we stalled longer than the lease) stops the handler
at its next checkpoint with LeaseLostError.

Reads before creates are paid only when they can find something. `read_before_create` tells a
handler whether an earlier attempt may have written what the progress does not record; when it
is False, a step that creates skips its look-up (a first delivery costs only its writes). It is
decided from the operation's row as claimed, which is durable before the attempt's first request:
a claim that takes over an expired lease sets it (that attempt started and never recorded an
outcome: kill -9 between the CRM's answer and our commit lands here), and so does the write that
records an attempt's failure when `may_have_written(error)`, a stop mid-handler, and a retried
dead letter (see `crm_mcp.state.outbox`). It never goes back to False.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from crm_mcp.errors import CircuitOpenError, ConnectorError, RateLimitedError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import SyncOperation

logger = logging.getLogger(__name__)


def may_have_written(error: BaseException) -> bool:
    """Whether an attempt that failed with `error` may have left a CRM write its progress lacks.

    Every create step records itself right after its one write, so only the request that failed
    is in doubt. It provably did nothing when it was refused before processing (429, or our own
    limiter's wait being too long), stopped by an open breaker, or never sent (`sent=False`: the
    connection was refused). The HTTP client re-sends a request after a try that may have been
    processed only when the request is idempotent, so a final 429 on a create means no try of it
    landed. Anything else (a timeout, a 5xx, a reset, an unexpected exception after the CRM
    answered) may have written.
    """
    if isinstance(error, RateLimitedError | CircuitOpenError):
        return False
    return not (isinstance(error, ConnectorError) and error.sent is False)


class HandlerContext:
    """One attempt at one operation, under this worker's lease."""

    def __init__(
        self,
        db: Database,
        op: SyncOperation,
        *,
        worker_id: str,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._lease = lease
        self._clock = clock
        self.operation = op
        self.attempt = op.attempts
        # As claimed: durable before this attempt's first request (see the module doc).
        self.read_before_create = bool(op.read_before_create)
        self._progress: dict[str, Any] = dict(op.result or {})
        # Renew once half the lease has gone; a claimed operation may have waited for a slot.
        self._renew_at = (op.lease_until or clock()) - lease / 2
        self._lost = False
        self.success_writes: list[Callable[[Connection], None]] = []

    @property
    def now(self) -> datetime:
        return self._clock()

    @property
    def progress(self) -> dict[str, Any]:
        """Steps recorded so far, including those of earlier attempts (a copy)."""
        return dict(self._progress)

    @property
    def stored_progress(self) -> dict[str, Any]:
        """The progress to store with this attempt's outcome (claimed plus our checkpoints)."""
        return self._progress

    async def checkpoint(self, result: dict[str, Any]) -> None:
        """Record a finished step (stored with the attempt's outcome, see the module doc).

        Raises LeaseLostError if the lease is known to be lost, or if half of it has gone and
        renewing it finds it lost.
        """
        self._progress = {**self._progress, **result}
        await self.keep_lease()

    async def keep_lease(self) -> None:
        """Renew the lease if half of it has gone (by the worker's clock); LeaseLostError if lost."""
        if self._lost:
            raise outbox.LeaseLostError(f"operation {self.operation.id} was reclaimed by another worker")
        if self._clock() >= self._renew_at:
            await self.renew_lease()

    async def renew_lease(self) -> None:
        """Store the progress now and extend the lease; raises LeaseLostError if it was lost."""
        now = self._clock()
        try:
            await outbox.checkpoint(
                self._db,
                self.operation.id,
                {},
                worker_id=self._worker_id,
                lease_until=now + self._lease,
                progress=dict(self._progress),  # ours alone while we hold the lease
            )
        except outbox.LeaseLostError:
            self._lost = True
            raise
        self._renew_at = max(self._renew_at, now + self._lease / 2)

    async def keep_alive(self) -> None:
        """Renew the lease every third of its length until cancelled (run beside the handler).

        Stops when the lease is lost; a failed renewal (database busy or down) is logged and
        tried again at the next turn, which still leaves a third of the lease.
        """
        every = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                await self.renew_lease()
            except outbox.LeaseLostError:
                logger.warning("operation %s: lease lost while its handler ran", self.operation.id)
                return
            except Exception:
                logger.warning("operation %s: renewing the lease failed", self.operation.id, exc_info=True)

    def on_success(self, write: Callable[[Connection], None]) -> None:
        """Run `write(connection)` in the transaction that records this attempt's success, so the
        handler's own rows (e.g. external refs) commit together with the outcome, in one write."""
        self.success_writes.append(write)

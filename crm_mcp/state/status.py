"""How healthy is sync? Numbers, a verdict, and what to do about it.

One read-only query set feeds `sync://status`, `get_sync_status`, `check_integration_health`,
`/readyz` and `crm-mcp status`, so they can never disagree. The verdict rules are data
(`HealthThresholds`) and the recommendations are plain sentences an agent can act on. The models
import no SQLAlchemy, so a server can publish them as tool schemas cheaply at start-up; the
queries load it on first use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

Verdict = Literal["healthy", "degraded", "unhealthy"]


class HealthThresholds(BaseModel):
    """When sync stops being healthy. Defaults suit a small business's booking flow."""

    min_success_rate: float = Field(0.9, description="Below this success rate over the window: degraded.")
    degraded_dead_letters: int = Field(0, description="More dead letters than this: degraded.")
    max_dead_letters: int = Field(50, description="More dead letters than this: unhealthy.")
    max_oldest_pending_s: float = Field(900.0, description="Oldest pending older than this (s): degraded.")
    worker_alive_s: float = Field(30.0, description="A worker seen within this many seconds is alive.")


class RecentFailure(BaseModel):
    operation_id: str
    action: str
    connection: str
    attempt: int
    outcome: str
    error_type: str | None
    error: str | None
    status_code: int | None
    at: datetime


class WorkerStatus(BaseModel):
    worker_id: str
    pid: int
    started_at: datetime
    seen_at: datetime
    processed: int
    alive: bool


class SyncStatus(BaseModel):
    """A snapshot of the outbox and the worker fleet."""

    generated_at: datetime
    window_seconds: float
    totals: dict[str, int] = Field(description="Operations by status: pending, in_flight, succeeded, dead.")
    attempts_in_window: int
    successes_in_window: int
    failures_in_window: int
    success_rate: float | None = Field(
        description="Successes / finished attempts in the window; null without attempts."
    )
    pending_backlog: int
    due_now: int
    oldest_pending_age_s: float | None
    in_flight: int
    dead_letters: int
    recent_failures: list[RecentFailure]
    workers: list[WorkerStatus]
    live_workers: int
    verdict: Verdict
    reasons: list[str]
    recommendations: list[str]
    connectors: dict[str, Any] = Field(
        default_factory=dict,
        description="Per connection: breaker, quota, backlog, health (verdict, reasons).",
    )
    call_pipeline: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per telephony connection: last call-log pull, checkpoint, lag, calls by state.",
    )

    def summary(self, *, full: bool = False) -> StatusSummary:
        """What get_sync_status answers: the verdict and the numbers behind it, each connection's
        verdict, and the rest (`details`) only when `full`."""
        connections: dict[str, str] = {}
        for name, entry in self.connectors.items():
            if (verdict := (entry.get("health") or {}).get("verdict")) is not None:
                connections[name] = verdict
        details = None
        if full:
            details = StatusDetails(
                window_seconds=self.window_seconds,
                attempts_in_window=self.attempts_in_window,
                successes_in_window=self.successes_in_window,
                failures_in_window=self.failures_in_window,
                due_now=self.due_now,
                recent_failures=self.recent_failures,
                workers=self.workers,
                connectors=self.connectors,
                call_pipeline=self.call_pipeline,
            )
        return StatusSummary(
            generated_at=self.generated_at,
            verdict=self.verdict,
            reasons=self.reasons,
            recommendations=self.recommendations,
            totals=self.totals,
            success_rate=self.success_rate,
            oldest_pending_age_s=self.oldest_pending_age_s,
            dead_letters=self.dead_letters,
            live_workers=self.live_workers,
            connections=connections,
            details=details,
        )


class StatusDetails(BaseModel):
    """The rest of a `SyncStatus`, for get_sync_status with detail="full"."""

    window_seconds: float
    attempts_in_window: int
    successes_in_window: int
    failures_in_window: int
    due_now: int
    recent_failures: list[RecentFailure]
    workers: list[WorkerStatus]
    connectors: dict[str, Any]  # per connection: breaker, quota, backlog, preflight, health
    call_pipeline: list[dict[str, Any]]  # per telephony connection: last pull, checkpoint, lag, calls


class StatusSummary(BaseModel):
    """get_sync_status's answer. Small by default, since every client parses and validates all of
    it on every call; `details` holds the per-connection breakdown, recent failures, workers and
    the call-log pipeline when asked for (sync://status always has them)."""

    generated_at: datetime
    verdict: Verdict
    reasons: list[str]
    recommendations: list[str]
    totals: dict[str, int] = Field(description="Operations by status: pending, in_flight, succeeded, dead.")
    success_rate: float | None = Field(
        description="Successes / finished attempts in the health window; null without attempts."
    )
    oldest_pending_age_s: float | None
    dead_letters: int
    live_workers: int
    connections: dict[str, str] = Field(description="Each connection's verdict.")
    details: StatusDetails | None = Field(default=None, description='Only with detail="full".')


async def sync_status(
    session: AsyncSession,
    *,
    now: datetime,
    window: timedelta = timedelta(hours=24),
    thresholds: HealthThresholds | None = None,
    connections: Collection[str] | None = None,
) -> SyncStatus:
    """Gather the numbers and judge them against `thresholds`; with `connections`, only those
    connections' operations count (a tenant's view)."""
    # Imported here so the pydantic models above load without SQLAlchemy (fast server start-up).
    from sqlalchemy import and_, func, select, true

    from crm_mcp.state.models import OP_STATUSES, DeadLetter, SyncLog, SyncOperation, WorkerHeartbeat

    limits = thresholds or HealthThresholds()
    since = now - window

    def mine(column: Any) -> Any:
        return column.in_(list(connections)) if connections is not None else true()

    own_ops, own_logs = mine(SyncOperation.connection), mine(SyncLog.connection)
    totals = dict.fromkeys(OP_STATUSES, 0)
    for status, count in await session.execute(
        select(SyncOperation.status, func.count()).where(own_ops).group_by(SyncOperation.status)
    ):
        totals[status] = count
    outcomes: Counter[str] = Counter()
    for outcome, count in await session.execute(
        select(SyncLog.outcome, func.count())
        .where(SyncLog.finished_at >= since, own_logs)
        .group_by(SyncLog.outcome)
    ):
        outcomes[outcome] = count
    successes = outcomes["success"]
    failures = outcomes["retry"] + outcomes["dead"]
    rate = successes / (successes + failures) if successes + failures else None

    pending = and_(SyncOperation.status == "pending", own_ops)
    oldest = (await session.execute(select(func.min(SyncOperation.created_at)).where(pending))).scalar()
    oldest_age = (now - oldest).total_seconds() if oldest is not None else None
    due_now = (
        await session.execute(select(func.count()).where(pending, SyncOperation.next_attempt_at <= now))
    ).scalar_one()
    dead_letters = (
        await session.execute(
            select(func.count())
            .select_from(DeadLetter)
            .where(DeadLetter.retried_at.is_(None), mine(DeadLetter.connection))
        )
    ).scalar_one()
    failed_logs = await session.execute(
        select(SyncLog)
        .where(SyncLog.outcome.in_(("retry", "dead")), own_logs)
        .order_by(SyncLog.id.desc())
        .limit(10)
    )
    recent = [
        RecentFailure(
            operation_id=log.operation_id,
            action=log.action,
            connection=log.connection,
            attempt=log.attempt,
            outcome=log.outcome,
            error_type=log.error_type,
            error=log.error,
            status_code=log.status_code,
            at=log.finished_at,
        )
        for log in failed_logs.scalars()
    ]
    beats = await session.execute(select(WorkerHeartbeat).order_by(WorkerHeartbeat.seen_at.desc()))
    workers = [
        WorkerStatus(
            worker_id=b.worker_id,
            pid=b.pid,
            started_at=b.started_at,
            seen_at=b.seen_at,
            processed=b.processed,
            alive=(now - b.seen_at).total_seconds() <= limits.worker_alive_s,
        )
        for b in beats.scalars()
    ]
    live = sum(w.alive for w in workers)

    reasons: list[str] = []
    advice: list[str] = []
    unhealthy = False
    if rate is not None and rate < limits.min_success_rate:
        reasons.append(
            f"Success rate over the last {_human(window)} is {rate:.0%} "
            f"(below {limits.min_success_rate:.0%}; {failures} failed of {successes + failures} attempts)."
        )
        advice.append(_failure_advice(recent))
    if dead_letters > limits.max_dead_letters:
        unhealthy = True
        reasons.append(f"{dead_letters} operations are dead (more than {limits.max_dead_letters}).")
    elif dead_letters > limits.degraded_dead_letters:
        reasons.append(f"{dead_letters} operation(s) are dead and will not be retried automatically.")
    if dead_letters:
        cause = _dead_cause(recent)
        advice.append(
            f"Call list_dead_letters to see why, then retry_failed_sync for the {dead_letters} dead "
            f"operation(s) after fixing {cause}."
        )
    if oldest_age is not None and oldest_age > limits.max_oldest_pending_s:
        reasons.append(
            f"The oldest pending operation has waited {_human(timedelta(seconds=oldest_age))} "
            f"(limit {_human(timedelta(seconds=limits.max_oldest_pending_s))})."
        )
    if totals["pending"] + totals["in_flight"] and live == 0:
        reasons.append(
            f"{totals['pending'] + totals['in_flight']} operation(s) are waiting but no worker is alive."
        )
        advice.append("Start a worker: `crm-mcp worker`, or run `crm-mcp serve` without --no-worker.")
    elif oldest_age is not None and oldest_age > limits.max_oldest_pending_s:
        advice.append("The backlog is not draining: check the CRM's rate limits and circuit breakers.")
    verdict: Verdict = "unhealthy" if unhealthy else ("degraded" if reasons else "healthy")
    return SyncStatus(
        generated_at=now,
        window_seconds=window.total_seconds(),
        totals=totals,
        attempts_in_window=successes + failures + outcomes["rescheduled"],
        successes_in_window=successes,
        failures_in_window=failures,
        success_rate=rate,
        pending_backlog=totals["pending"],
        due_now=due_now,
        oldest_pending_age_s=oldest_age,
        in_flight=totals["in_flight"],
        dead_letters=dead_letters,
        recent_failures=recent,
        workers=workers,
        live_workers=live,
        verdict=verdict,
        reasons=reasons,
        recommendations=list(dict.fromkeys(a for a in advice if a)),
    )


def _dead_cause(recent: list[RecentFailure]) -> str:
    dead = [f for f in recent if f.outcome == "dead"]
    if not dead:
        return "the cause shown in each entry's error history"
    common, _ = Counter(f.error_type or "error" for f in dead).most_common(1)[0]
    example = next(f for f in dead if (f.error_type or "error") == common)
    return f"the cause of the {common} errors (latest: {(example.error or '')[:160]})"


def _failure_advice(recent: list[RecentFailure]) -> str:
    if not recent:
        return "Check the CRM connection with check_integration_health."
    kinds = Counter(f.error_type or "error" for f in recent).most_common(1)[0][0]
    return f"Most recent failures are {kinds}; check the connection with check_integration_health."


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"

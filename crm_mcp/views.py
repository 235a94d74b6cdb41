"""Read models shared by the tools, the resources, the HTTP routes and the CLI.

Sync status and the dead-letter queue are shown in four places (the get_sync_status and
list_dead_letters tools, the sync:// resources, /readyz and /metrics, `crm-mcp status` and
`crm-mcp dlq`); they are computed here, once, so the four never disagree, and so that no reader
has to import a tool module to reach them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from crm_mcp.connectors.base import CustomFields
from crm_mcp.connectors.registry import get_provider
from crm_mcp.errors import CRMError
from crm_mcp.scope import connection_filter, current_principal
from crm_mcp.state.status import SyncStatus

if TYPE_CHECKING:
    from crm_mcp.preflight import ConnectionCheck
    from crm_mcp.runtime import Runtime
    from crm_mcp.settings import HealthThresholdSettings


class DeadLetterEntry(BaseModel):
    id: str = Field(description="Dead-letter entry id (read sync://dead-letter/{id} for details).")
    operation_id: str
    connection: str
    action: str
    reason: str = Field(description="The final error, already redacted.")
    attempts: int
    dead_at: datetime
    retried_at: datetime | None = None
    retry_count: int = 0
    entity_type: str | None = None
    entity_id: str | None = None
    correlation_id: str | None = Field(None, description="Its id in logs and traces.")
    error_history: list[dict[str, Any]] = Field(
        default_factory=list, description="Every failed attempt: at, error_type, error, status_code."
    )


class DeadLetterList(BaseModel):
    entries: list[DeadLetterEntry]
    count: int = Field(description="Entries in this page.")
    has_more: bool
    next_offset: int | None = None


async def dead_letter_page(
    rt: Runtime, *, connection: str | None, limit: int, offset: int, with_history: bool
) -> DeadLetterList:
    from crm_mcp.state.models import SyncOperation
    from crm_mcp.state.outbox import list_dead_letters

    db = await rt.database()
    async with db.sessions() as session:
        if connection is not None and not current_principal().may_use(connection):
            rows = []  # another tenant's connection: as empty as one with no dead letters
        else:
            rows = await list_dead_letters(
                session,
                connection=connection,
                connections=connection_filter(),
                limit=limit + 1,
                offset=offset,
            )
        entries = []
        for row in rows[:limit]:
            op = await session.get(SyncOperation, row.operation_id)
            entries.append(dead_letter_entry(row, op, with_history=with_history))
    more = len(rows) > limit
    return DeadLetterList(
        entries=entries, count=len(entries), has_more=more, next_offset=offset + limit if more else None
    )


def dead_letter_entry(row: Any, op: Any, *, with_history: bool = True) -> DeadLetterEntry:
    from crm_mcp.state.outbox import failed_attempts  # the count the entry's reason gives

    return DeadLetterEntry(
        id=row.id,
        operation_id=row.operation_id,
        connection=row.connection,
        action=row.action,
        reason=row.reason,
        attempts=failed_attempts(row.error_history or []),
        dead_at=row.dead_at,
        retried_at=row.retried_at,
        retry_count=row.retry_count,
        entity_type=op.entity_type if op else None,
        entity_id=op.entity_id if op else None,
        correlation_id=op.correlation_id if op else None,
        error_history=list(row.error_history or []) if with_history else [],
    )


class OperationAttempt(BaseModel):
    attempt: int
    outcome: str = Field(description="success, retry, dead, ... as the worker recorded it.")
    started_at: datetime
    finished_at: datetime
    duration_ms: int | None = None
    error_type: str | None = None
    error: str | None = Field(None, description="Already redacted.")
    status_code: int | None = Field(None, description="The CRM's HTTP status, when it answered.")


class OperationView(BaseModel):
    """One outbox operation: where it is, what each attempt did, and what it made in the CRM."""

    id: str
    uri: str = Field(description="This resource; subscribe to it to learn when the operation lands.")
    action: str
    connection: str
    entity_type: str
    entity_id: str = Field(description="The local record the operation delivers.")
    status: str = Field(description="pending | in_flight | succeeded | dead.")
    attempts: int
    next_attempt_at: datetime | None = Field(None, description="When it is tried next (pending only).")
    deadline_at: datetime
    last_error: str | None = None
    progress: dict[str, Any] = Field(
        default_factory=dict, description="Steps done so far (a retry resumes after the last)."
    )
    result: dict[str, Any] | None = Field(None, description="What the delivery returned (succeeded only).")
    crm_ids: dict[str, str] = Field(
        default_factory=dict, description="CRM records made or matched for the local record, by type."
    )
    attempt_log: list[OperationAttempt] = Field(description="The latest 50 attempts, oldest first.")
    dead_letters: list[DeadLetterEntry] = Field(
        default_factory=list, description="Each time it went dead, with the full error history."
    )
    created_at: datetime
    updated_at: datetime
    next_step: str


def operation_uri(op_id: str) -> str:
    return f"sync://operations/{op_id}"


async def operation_view(rt: Runtime, op_id: str) -> OperationView | None:
    """The operation `op_id`, or None if there is none. Holds no clock reading, so the text only
    changes when the operation does (subscribers are told exactly then)."""
    from crm_mcp.state.models import SyncOperation
    from crm_mcp.state.operation_log import attempts_of, dead_letters_of
    from crm_mcp.state.refs import refs_of

    db = await rt.database()
    async with db.sessions() as session:
        op = await session.get(SyncOperation, op_id)
        if op is None or not current_principal().may_use(op.connection):
            return None  # another tenant's operation is as unknown as one that never existed
        attempts = await attempts_of(session, op.id)
        dead = await dead_letters_of(session, op.id)
        crm_ids = await refs_of(session, op.connection, op.entity_type, op.entity_id)
    done = op.status == "succeeded"
    return OperationView(
        id=op.id,
        uri=operation_uri(op.id),
        action=op.action,
        connection=op.connection,
        entity_type=op.entity_type,
        entity_id=op.entity_id,
        status=op.status,
        attempts=op.attempts,
        next_attempt_at=op.next_attempt_at if op.status == "pending" else None,
        deadline_at=op.deadline_at,
        last_error=op.last_error,
        progress={} if done else dict(op.result or {}),
        result=dict(op.result or {}) if done else None,
        crm_ids=crm_ids,
        attempt_log=[OperationAttempt.model_validate(a, from_attributes=True) for a in attempts],
        dead_letters=[dead_letter_entry(row, op) for row in dead],
        created_at=op.created_at,
        updated_at=op.updated_at,
        next_step=_next_step(op.id, op.status),
    )


def _next_step(op_id: str, status: str) -> str:
    if status == "dead":
        return f"Fix the cause in dead_letters, then call retry_failed_sync with operation_id={op_id!r}."
    if status == "succeeded":
        return "Delivered; nothing to do."
    return "Queued for the worker; subscribe to this resource (or read it again) to see it land."


async def current_status(rt: Runtime, *, max_age_s: float = 0.0) -> SyncStatus:
    """The sync status; with `max_age_s`, a snapshot computed at most that long ago is reused
    as long as nothing changed in this process since (other processes show up within max_age_s).

    Readers that find the snapshot stale while another is recomputing it wait for that one, so
    a burst of polls (an HTTP probe, many clients) costs one computation, not one per request.
    """
    if max_age_s <= 0:
        return await _refresh_status(rt)
    if (cached := _cached_status(rt, max_age_s)) is not None:
        return cached
    async with rt.read_lock:
        return _cached_status(rt, max_age_s) or await _refresh_status(rt)


def _status_key() -> str:
    """Snapshots are cached per set of visible connections: a tenant never gets another's."""
    return f"sync_status:{current_principal().cache_key()}"


def _cached_status(rt: Runtime, max_age_s: float) -> SyncStatus | None:
    cached = rt.read_cache.get(_status_key())
    if cached is None:
        return None
    at, generation, value = cached
    if generation == rt.generation and time.monotonic() - at <= max_age_s:
        return value  # type: ignore[no-any-return]
    return None


async def _refresh_status(rt: Runtime) -> SyncStatus:
    generation = rt.generation
    status = await _compute_status(rt)
    rt.read_cache[_status_key()] = (time.monotonic(), generation, status)
    return status


async def server_status(rt: Runtime) -> SyncStatus:
    """The sync status as the running server sees it, for another process (`crm-mcp status`):
    breakers and limiters from what the server and workers publish, not this process's own."""
    return await _compute_status(rt, published=True)


async def _compute_status(rt: Runtime, *, published: bool = False) -> SyncStatus:
    from crm_mcp.state.status import HealthThresholds, sync_status

    h = rt.settings.health
    thresholds = HealthThresholds(
        min_success_rate=h.min_success_rate,
        max_dead_letters=h.max_dead_letters,
        max_oldest_pending_s=h.max_oldest_pending_s,
    )
    db = await rt.database()
    async with db.sessions() as session:
        window = timedelta(seconds=rt.settings.health_window_seconds)  # recent: recovers with delivery
        status = await sync_status(
            session, now=rt.clock(), window=window, thresholds=thresholds, connections=connection_filter()
        )
    status.connectors = await published_connector_states(rt) if published else connector_states(rt)
    await _add_connection_checks(rt, status)
    await _add_connection_health(rt, status)
    from crm_mcp.sync.call_pull import pipeline_status

    status.call_pipeline = await pipeline_status(rt)
    return status


def connector_states(rt: Runtime) -> dict[str, Any]:
    """Breaker and quota state per configured connection (no network call: local state only)."""
    out: dict[str, Any] = {}
    for conn in rt.connections():
        if get_provider(conn.provider).connector is None:
            out[conn.name] = {"provider": conn.provider, "webhooks_only": True}
            continue
        try:
            connector = rt.connector(conn.name)
        except CRMError as exc:
            out[conn.name] = {"provider": conn.provider, "error": str(exc)}
            continue
        snap = getattr(connector, "snapshot", None)
        out[conn.name] = {"provider": conn.provider, **(snap() if callable(snap) else {})}
    return out


# -- a connection's fields (analyze_crm_schema, sync_records, crm://{connection}/schema) ---------

MAX_OPTIONS = 20


class SchemaField(BaseModel):
    key: str = Field(description="Field key to use in API calls (e.g. email, contact.budget).")
    label: str = Field(description="CRM data: the field's display label.")
    type: str = Field(description="Provider type, e.g. TEXT, DATE, SINGLE_OPTIONS, NUMERICAL.")
    required: bool = False
    options: list[str] = Field(default_factory=list, description=f"At most {MAX_OPTIONS} options.")
    custom: bool = Field(description="True for a location custom field.")
    id: str | None = None


async def crm_fields(rt: Runtime, connection: str | None, obj: str) -> tuple[str, list[SchemaField]]:
    connector = rt.connector(connection, CustomFields)
    if obj == "appointment":
        neutral = connector.appointment_fields()
    else:
        neutral = [*connector.contact_fields(), *await connector.list_custom_fields()]
    return connector.connection, [
        SchemaField(
            key=f.key,
            label=f.label,
            type=f.type,
            required=f.required,
            options=f.options[:MAX_OPTIONS],
            custom=f.custom,
            id=f.id,
        )
        for f in neutral
    ]


async def published_connector_states(rt: Runtime, *, live_s: float = 30.0) -> dict[str, Any]:
    """Breaker and quota state per configured connection as the running server and workers
    published it (within `live_s`), with which process said so and when."""
    from crm_mcp.state.connection_state import load_guards

    db = await rt.database()
    async with db.sessions() as session:
        guards = await load_guards(session, since=rt.clock() - timedelta(seconds=live_s))
    out: dict[str, Any] = {}
    for conn in rt.connections():
        g = guards.get(conn.name)
        if get_provider(conn.provider).connector is None:
            out[conn.name] = {"provider": conn.provider, "webhooks_only": True}
        elif g is None:
            out[conn.name] = {
                "provider": conn.provider,
                "published_by": None,
                "note": f"no server or worker published its state in the last {live_s:.0f} s "
                "(none running, or it has not called this CRM yet)",
            }
        else:
            out[conn.name] = {
                **g.snapshot,
                "provider": conn.provider,
                "published_by": g.process,
                "published_at": g.seen_at.isoformat(timespec="seconds"),
            }
    return out


async def _add_connection_checks(rt: Runtime, status: SyncStatus) -> None:
    """Each connection's last preflight, and what a failed one (or no connection) means."""
    from crm_mcp.preflight import describe_failure, last_checks, no_connection_advice

    if not rt.connections():
        reason, advice = no_connection_advice()
        if not current_principal().unrestricted:  # connections exist, none is this tenant's
            reason = "No connection is mapped to this access token."
            advice = "Ask the operator to list your connections under [principals.<name>] in crm-mcp.toml."
        status.verdict = "unhealthy"
        status.reasons.append(reason)
        status.recommendations.append(advice)
        return
    checks = await last_checks(rt)
    for conn in rt.connections():
        check = checks.get(conn.name)
        entry = status.connectors.setdefault(conn.name, {"provider": conn.provider})
        _judge_breaker(conn.name, entry, status)
        if check is None:
            entry["preflight"] = None
            continue
        failed = check.failure
        entry["preflight"] = {
            "ok": check.ok,
            "checked_at": check.checked_at.isoformat(timespec="seconds"),
            "failing_since": check.failing_since.isoformat(timespec="seconds")
            if check.failing_since
            else None,
            "problem": describe_failure(check),
            "failed_check": failed.label if failed is not None else None,
            "failed": failed.name if failed is not None else None,
        }
        if failed is None:
            continue
        status.reasons.append(f"Connection {conn.name}: {check.provider} {failed.detail}.")
        if failed.fix:
            status.recommendations.append(f"Fix {conn.name}: {failed.fix}")
        serious = failed.name != "calendar" and "RateLimited" not in failed.detail
        if serious:
            status.verdict = "unhealthy"
        elif status.verdict == "healthy":
            status.verdict = "degraded"


def _judge_breaker(name: str, entry: dict[str, Any], status: SyncStatus) -> None:
    """An open (or probing) breaker degrades the verdict, with what to do about it."""
    state = (entry.get("breaker") or {}).get("state")
    if state not in ("open", "half_open"):
        return
    what = "open: calls are paused" if state == "open" else "half open: probing the CRM"
    status.reasons.append(f"Connection {name}: the circuit breaker is {what} after repeated failures.")
    status.recommendations.append(
        f"Check {name} with check_integration_health (or `crm-mcp connections test {name}`); the "
        "breaker probes the CRM by itself and queued writes follow once it answers."
    )
    if status.verdict == "healthy":
        status.verdict = "degraded"


# -- one connection at a glance: quota, backlog, verdict ------------------------------------------
# check_integration_health, sync://status (each entry of its `connectors`), /metrics, the dashboard
# and `crm-mcp status` all take these from here, so no two of them can disagree.

Verdict = Literal["healthy", "degraded", "unhealthy"]


def quota(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """A connector snapshot's quota and breaker: requests left in the burst window (the CRM's own
    count when it reports one) and today, with their limits, and the breaker state."""
    lim = snapshot.get("limiter") or {}
    burst = lim.get("server_remaining")
    if burst is None and lim.get("limit") is not None:
        burst = max(0, int(lim["limit"]) - int(lim.get("in_window") or 0))
    return {
        "burst_remaining": burst,
        "burst_limit": lim.get("limit"),
        "daily_remaining": lim.get("daily_remaining"),
        "daily_limit": lim.get("daily_limit"),
        "breaker_state": (snapshot.get("breaker") or {}).get("state"),
    }


async def connection_numbers(
    rt: Runtime, names: Sequence[str] | None = None, *, windows: Mapping[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """Per connection (default: every configured one): `pending`, `in_flight`,
    `oldest_pending_age_s`, `dead_letters` (not yet retried), `last_webhook_at`, and for each named
    window (seconds; default the health window, as "window") `attempts_<name>` and
    `success_rate_<name>`. One grouped query per figure, however many connections there are."""
    from sqlalchemy import func, select

    from crm_mcp.state.models import DeadLetter, InboxEvent, SyncLog, SyncOperation

    names = [c.name for c in rt.connections()] if names is None else list(names)
    spans = windows or {"window": rt.settings.health_window_seconds}
    out: dict[str, dict[str, Any]] = {
        name: {
            "pending": 0,
            "in_flight": 0,
            "oldest_pending_age_s": None,
            "dead_letters": 0,
            "last_webhook_at": None,
            **{
                f"{key}_{label}": value
                for label in spans
                for key, value in (("attempts", 0), ("success_rate", None))
            },
        }
        for name in names
    }
    if not names:
        return out
    now = rt.clock()
    op_conn = SyncOperation.connection
    db = await rt.database()
    async with db.sessions() as s:
        counts = select(op_conn, SyncOperation.status, func.count()).where(op_conn.in_(names))
        for name, status, count in await s.execute(counts.group_by(op_conn, SyncOperation.status)):
            if status in ("pending", "in_flight"):
                out[name][status] = count
        oldest = select(op_conn, func.min(SyncOperation.created_at)).where(
            op_conn.in_(names), SyncOperation.status == "pending"
        )
        for name, at in await s.execute(oldest.group_by(op_conn)):
            out[name]["oldest_pending_age_s"] = round((now - at).total_seconds(), 1) if at else None
        dead = select(DeadLetter.connection, func.count()).where(
            DeadLetter.connection.in_(names), DeadLetter.retried_at.is_(None)
        )
        for name, count in await s.execute(dead.group_by(DeadLetter.connection)):
            out[name]["dead_letters"] = count
        for label, seconds in spans.items():
            outcomes: dict[str, dict[str, int]] = {name: {} for name in names}
            logs = select(SyncLog.connection, SyncLog.outcome, func.count()).where(
                SyncLog.connection.in_(names), SyncLog.finished_at >= now - timedelta(seconds=seconds)
            )
            for name, outcome, count in await s.execute(logs.group_by(SyncLog.connection, SyncLog.outcome)):
                outcomes[name][outcome] = count
            for name, rows in outcomes.items():
                ok, bad = rows.get("success", 0), rows.get("retry", 0) + rows.get("dead", 0)
                out[name][f"attempts_{label}"] = ok + bad
                out[name][f"success_rate_{label}"] = round(ok / (ok + bad), 3) if ok + bad else None
        hooks = select(InboxEvent.connection, func.max(InboxEvent.received_at)).where(
            InboxEvent.connection.in_(names)
        )
        for name, at in await s.execute(hooks.group_by(InboxEvent.connection)):
            out[name]["last_webhook_at"] = at
    return out


class ConnectionHealth(BaseModel):
    connection: str
    provider: str
    capabilities: list[str] = Field(
        default_factory=list, description="What its CRM can do (contacts, appointments, calendars, ...)."
    )
    verdict: Verdict
    credentials_valid: bool | None = Field(description="None when the check could not reach the CRM.")
    latency_ms: float | None = Field(
        None, description="Duration of the connection check (token, tenant, calendar)."
    )
    check_error: str | None = Field(None, description="The failed check, as the CRM said it (redacted).")
    burst_remaining: int | None = None
    burst_limit: int | None = None
    daily_remaining: int | None = None
    daily_limit: int | None = None
    breaker_state: str | None = Field(None, description="closed, open or half_open.")
    pending: int = 0
    in_flight: int = 0
    oldest_pending_age_s: float | None = None
    dead_letters: int = 0
    success_rate_1h: float | None = None
    attempts_1h: int = 0
    success_rate_24h: float | None = None
    attempts_24h: int = 0
    last_webhook_at: datetime | None = None
    reasons: list[str] = Field(default_factory=list)
    recommendations: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Window:
    """Delivery over the recent window the verdict judges."""

    seconds: float
    rate: float | None
    attempts: int


def judge(
    h: ConnectionHealth,
    t: HealthThresholdSettings,
    live_workers: int,
    *,
    window: Window | None = None,
    preflight: ConnectionCheck | None = None,
) -> ConnectionHealth:
    """Pure: fill verdict, reasons and recommendations from the measured numbers.

    Delivery is judged over the recent `window` only (`CRM_MCP_HEALTH_WINDOW_SECONDS`, default one
    hour), so the verdict recovers once deliveries do; every reason comes with something to do.
    """
    bad: list[str] = []  # unhealthy reasons
    meh: list[str] = []  # degraded reasons
    todo: list[str] = []
    failed = preflight.failure if preflight is not None else None
    if failed is not None:
        mild = failed.name == "calendar" or "RateLimited" in failed.detail
        (meh if mild else bad).append(f"{h.provider} {failed.detail}.")
        verb = "Reconnect" if failed.name == "token" else "Fix"
        todo.append(
            f"{verb} {h.connection}: {failed.fix}" if failed.fix else "Check the connection settings."
        )
    if h.latency_ms is not None and h.latency_ms > t.max_latency_s * 1000:
        meh.append(f"The CRM answered in {h.latency_ms:.0f} ms (limit {t.max_latency_s:g} s).")
        todo.append("The CRM is slow: check its status page; writes still queue and deliver.")
    if h.breaker_state == "open":
        bad.append("The circuit breaker is open: calls are paused after repeated failures.")
        todo.append("Wait for the breaker's probe (it retries the CRM by itself); the queued writes follow.")
    elif h.breaker_state == "half_open":
        meh.append("The circuit breaker is probing the CRM after failures.")
        todo.append("Call check_integration_health again in a minute: the probe decides.")
    if h.burst_remaining == 0:
        meh.append(f"The burst quota ({h.burst_limit} per window) is used up; calls wait for the window.")
        todo.append(
            "Nothing is lost: calls wait for the window. Spread bulk work (smaller pages) if it lasts."
        )
    if h.daily_remaining is not None and h.daily_limit and h.daily_remaining < 0.05 * h.daily_limit:
        meh.append(f"Only {h.daily_remaining} of {h.daily_limit} daily requests remain.")
        todo.append("Reduce polling (validate_sync sample, search limits) until the daily quota resets.")
    if window is not None and window.rate is not None and window.rate < t.min_success_rate:
        meh.append(
            f"Sync success rate over the last {_span(window.seconds)} is {window.rate:.0%} of "
            f"{window.attempts} attempts (below {t.min_success_rate:.0%})."
        )
        todo.append(
            'See why in get_sync_status (detail="full": recent_failures) and list_dead_letters; the '
            "rate recovers as deliveries succeed."
        )
    if h.dead_letters > t.max_dead_letters:
        bad.append(f"{h.dead_letters} dead operations (more than {t.max_dead_letters}).")
    elif h.dead_letters:
        meh.append(f"{h.dead_letters} operation(s) failed for good.")
    if h.dead_letters:
        todo.append("Call list_dead_letters to see why, fix the cause, then retry_failed_sync.")
    if h.oldest_pending_age_s is not None and h.oldest_pending_age_s > t.max_oldest_pending_s:
        meh.append(f"The oldest queued write has waited {h.oldest_pending_age_s:.0f} s.")
        todo.append("The backlog is not draining: check the breaker and quota above and `crm-mcp status`.")
    if (h.pending or h.in_flight) and not live_workers:
        meh.append(f"{h.pending + h.in_flight} write(s) queued but no sync worker is alive.")
        todo.append("Start a worker: `crm-mcp worker`, or run `crm-mcp serve` without --no-worker.")
    if h.last_webhook_at is None and h.credentials_valid is not None and get_provider(h.provider).webhooks:
        todo.append(
            "No webhook received yet: register the webhook (generate_connector_config gives the URL) "
            "so CRM-side changes reach the local records."
        )
    h.verdict = "unhealthy" if bad else "degraded" if meh else "healthy"
    h.reasons, h.recommendations = bad + meh, list(dict.fromkeys(todo))
    return h


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "hour" if hours == 1 else f"{hours} hours"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


async def _add_connection_health(rt: Runtime, status: SyncStatus) -> None:
    """Each connection's `quota`, `backlog` and `health` (verdict, reasons, recommendations), as
    check_integration_health judges them from the numbers at hand: its last stored check instead
    of a new one, and no latency reading."""
    from crm_mcp.preflight import last_checks

    conns = rt.connections()
    if not conns:
        return
    checks = await last_checks(rt)
    numbers = await connection_numbers(rt, [c.name for c in conns])
    for conn in conns:
        entry = status.connectors.setdefault(conn.name, {"provider": conn.provider})
        n, check = numbers[conn.name], checks.get(conn.name)
        token = next((c for c in check.checks if c.name == "token"), None) if check else None
        h = ConnectionHealth(
            connection=conn.name,
            provider=conn.provider,
            verdict="healthy",
            credentials_valid=token.ok if token is not None else None,
            **quota(entry),
            **{k: n[k] for k in ("pending", "in_flight", "oldest_pending_age_s", "dead_letters")},
            last_webhook_at=n["last_webhook_at"],
        )
        window = Window(rt.settings.health_window_seconds, n["success_rate_window"], n["attempts_window"])
        judge(h, rt.settings.health, status.live_workers, window=window, preflight=check)
        entry["quota"] = quota(entry)
        entry["backlog"] = {k: n[k] for k in ("pending", "in_flight", "dead_letters", "oldest_pending_age_s")}
        entry["health"] = {"verdict": h.verdict, "reasons": h.reasons, "recommendations": h.recommendations}

"""check_integration_health: is each CRM connection working right now, and if not, what to do.

Measured, not remembered: a cheap authenticated call (connector.ping) gives credential validity
and latency; the connector's own limiter/breaker snapshot gives quota and breaker state; the
outbox and inbox tables give backlog, dead letters, success rates and webhook freshness for that
connection. The verdict is a pure function of those numbers and `settings.health` thresholds.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from crm_mcp.connectors.registry import get_provider
from crm_mcp.tools._base import crm_tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime
    from crm_mcp.settings import HealthThresholdSettings

Verdict = Literal["healthy", "degraded", "unhealthy"]
_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class ConnectionHealth(BaseModel):
    connection: str
    provider: str
    capabilities: list[str] = Field(
        default_factory=list, description="What its CRM can do (contacts, appointments, calendars, ...)."
    )
    verdict: Verdict
    credentials_valid: bool | None = Field(description="None when the check could not reach the CRM.")
    latency_ms: float | None = Field(None, description="Round trip of the authenticated check call.")
    check_error: str | None = Field(None, description="Why the check call failed (redacted).")
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


class HealthReport(BaseModel):
    checked_at: datetime
    verdict: Verdict = Field(description="The worst verdict of the connections checked.")
    connections: list[ConnectionHealth]
    live_workers: int
    thresholds: dict[str, float]


async def outbox_numbers(rt: Runtime, name: str) -> dict[str, Any]:
    from sqlalchemy import func, select

    from crm_mcp.state.models import DeadLetter, InboxEvent, SyncLog, SyncOperation, WorkerHeartbeat

    now = rt.clock()
    db = await rt.database()
    out: dict[str, Any] = {}
    async with db.sessions() as s:
        ops = SyncOperation.connection == name
        counts = dict(
            (
                await s.execute(
                    select(SyncOperation.status, func.count()).where(ops).group_by(SyncOperation.status)
                )
            ).all()
        )
        out["pending"], out["in_flight"] = counts.get("pending", 0), counts.get("in_flight", 0)
        oldest = (
            await s.execute(
                select(func.min(SyncOperation.created_at)).where(ops, SyncOperation.status == "pending")
            )
        ).scalar()
        out["oldest_pending_age_s"] = round((now - oldest).total_seconds(), 1) if oldest else None
        out["dead_letters"] = (
            await s.execute(
                select(func.count())
                .select_from(DeadLetter)
                .where(DeadLetter.connection == name, DeadLetter.retried_at.is_(None))
            )
        ).scalar_one()
        for label, window in (("1h", timedelta(hours=1)), ("24h", timedelta(hours=24))):
            rows = dict(
                (
                    await s.execute(
                        select(SyncLog.outcome, func.count())
                        .where(SyncLog.connection == name, SyncLog.finished_at >= now - window)
                        .group_by(SyncLog.outcome)
                    )
                ).all()
            )
            ok, bad = rows.get("success", 0), rows.get("retry", 0) + rows.get("dead", 0)
            out[f"attempts_{label}"] = ok + bad
            out[f"success_rate_{label}"] = round(ok / (ok + bad), 3) if ok + bad else None
        out["last_webhook_at"] = (
            await s.execute(select(func.max(InboxEvent.received_at)).where(InboxEvent.connection == name))
        ).scalar()
        out["live_workers"] = (
            await s.execute(
                select(func.count())
                .select_from(WorkerHeartbeat)
                .where(WorkerHeartbeat.seen_at >= now - timedelta(seconds=30))
            )
        ).scalar_one()
    return out


def quota(snapshot: dict[str, Any]) -> dict[str, Any]:
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


def judge(h: ConnectionHealth, t: HealthThresholdSettings, live_workers: int) -> ConnectionHealth:
    """Pure: fill verdict, reasons and recommendations from the measured numbers."""
    bad: list[str] = []  # unhealthy reasons
    meh: list[str] = []  # degraded reasons
    todo: list[str] = []
    if h.credentials_valid is False:
        bad.append(f"The CRM refused the credentials ({h.check_error}).")
        todo.append(
            f"Reconnect {h.connection}: create a new token (generate_connector_config lists the scopes) "
            "and put it in the connection's token setting (its CRM_MCP_<PROVIDER>_TOKEN variable, or "
            "crm-mcp.toml), then restart."
        )
    elif h.check_error:
        (meh if "RateLimited" in h.check_error else bad).append(f"The check call failed: {h.check_error}")
        todo.append("Check the CRM's status page and network; the worker keeps retrying queued writes.")
    if h.latency_ms is not None and h.latency_ms > t.max_latency_s * 1000:
        meh.append(f"The CRM answered in {h.latency_ms:.0f} ms (limit {t.max_latency_s:g} s).")
    if h.breaker_state == "open":
        bad.append("The circuit breaker is open: calls are paused after repeated failures.")
    elif h.breaker_state == "half_open":
        meh.append("The circuit breaker is probing the CRM after failures.")
    if h.burst_remaining == 0:
        meh.append("The burst quota (100 per 10 s) is used up; calls wait for the window.")
    if h.daily_remaining is not None and h.daily_limit and h.daily_remaining < 0.05 * h.daily_limit:
        meh.append(f"Only {h.daily_remaining} of {h.daily_limit} daily requests remain.")
        todo.append("Reduce polling (validate_sync sample, search limits) until the daily quota resets.")
    for label, rate, n in (
        ("hour", h.success_rate_1h, h.attempts_1h),
        ("day", h.success_rate_24h, h.attempts_24h),
    ):
        if rate is not None and rate < t.min_success_rate:
            meh.append(
                f"Sync success rate over the last {label} is {rate:.0%} of {n} attempts "
                f"(below {t.min_success_rate:.0%})."
            )
    if h.dead_letters > t.max_dead_letters:
        bad.append(f"{h.dead_letters} dead operations (more than {t.max_dead_letters}).")
    elif h.dead_letters:
        meh.append(f"{h.dead_letters} operation(s) failed for good.")
    if h.dead_letters:
        todo.append("Call list_dead_letters to see why, fix the cause, then retry_failed_sync.")
    if h.oldest_pending_age_s is not None and h.oldest_pending_age_s > t.max_oldest_pending_s:
        meh.append(f"The oldest queued write has waited {h.oldest_pending_age_s:.0f} s.")
    if (h.pending or h.in_flight) and not live_workers:
        meh.append(f"{h.pending + h.in_flight} write(s) queued but no sync worker is alive.")
        todo.append("Start a worker: `crm-mcp worker`, or run `crm-mcp serve` without --no-worker.")
    if h.last_webhook_at is None:
        todo.append(
            "No webhook received yet: register the webhook (generate_connector_config gives the URL) "
            "so CRM-side changes reach the local records."
        )
    h.verdict = "unhealthy" if bad else "degraded" if meh else "healthy"
    h.reasons, h.recommendations = bad + meh, list(dict.fromkeys(todo))
    return h


async def check_one(rt: Runtime, name: str, provider: str) -> tuple[ConnectionHealth, int]:
    from crm_mcp.errors import AuthError, CRMError

    declared = get_provider(provider)
    h = ConnectionHealth(
        connection=name,
        provider=provider,
        capabilities=sorted(declared.capabilities),
        verdict="healthy",
        credentials_valid=None,
    )
    try:
        if declared.connector is not None:  # webhook-only connections have no CRM API to check
            connector = rt.connector(name)
            started = time.perf_counter()
            await connector.ping()
            h.latency_ms = round((time.perf_counter() - started) * 1000, 1)
            h.credentials_valid = True
    except AuthError as exc:
        h.credentials_valid, h.check_error = False, f"{type(exc).__name__}: {exc}"
    except CRMError as exc:
        h.check_error = f"{type(exc).__name__}: {exc}"
    snap = getattr(rt.cached_connectors().get(name), "snapshot", None)
    if callable(snap):
        for key, value in quota(snap()).items():
            setattr(h, key, value)
    numbers = await outbox_numbers(rt, name)
    live = numbers.pop("live_workers")
    for key, value in numbers.items():
        setattr(h, key, value)
    return judge(h, rt.settings.health, live), live


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Check CRM integration health",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=True,
    )
    async def check_integration_health(
        connection: Annotated[
            str | None,
            Field(max_length=128, description="One connection; default: all.", examples=["sales-crm"]),
        ] = None,
    ) -> HealthReport:
        """Credentials, latency, quota, breaker, backlog, dead letters, success rates and webhook freshness,
        measured now, with a healthy/degraded/unhealthy verdict, reasons and what to do."""
        from crm_mcp.errors import redact

        targets = [rt.connection(connection)] if connection else rt.connections()
        results, live = [], 0
        for conn in targets:
            h, live = await check_one(rt, conn.name, conn.provider)
            h.check_error = redact(h.check_error) if h.check_error else None
            results.append(h)
        t = rt.settings.health
        worst = max((r.verdict for r in results), key=_RANK.__getitem__, default="healthy")
        return HealthReport(
            checked_at=rt.clock(),
            verdict=worst,
            connections=results,
            live_workers=live,
            thresholds={
                "min_success_rate": t.min_success_rate,
                "max_dead_letters": t.max_dead_letters,
                "max_latency_s": t.max_latency_s,
                "max_oldest_pending_s": t.max_oldest_pending_s,
            },
        )

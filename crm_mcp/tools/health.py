"""check_integration_health: is each CRM connection working right now, and if not, what to do.

Measured, not remembered: a cheap authenticated call (connector.ping) gives credential validity
and latency; the connector's own limiter/breaker snapshot gives quota and breaker state; the
outbox and inbox tables give backlog, dead letters, success rates and webhook freshness for that
connection. The verdict is a pure function of those numbers and `settings.health` thresholds
(`crm_mcp.views.judge`: the dashboard and sync://status judge each connection with it too).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from crm_mcp.connectors.registry import get_provider
from crm_mcp.errors import CRMError
from crm_mcp.tools._base import crm_tool
from crm_mcp.views import ConnectionHealth, Verdict, Window, connection_numbers, judge, quota

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class HealthReport(BaseModel):
    checked_at: datetime
    verdict: Verdict = Field(description="The worst of the connections'.")
    connections: list[ConnectionHealth]
    live_workers: int
    thresholds: dict[str, float]
    call_pipeline: list[dict[str, Any]] = Field(
        default_factory=list, description="Call-log pulls: last run, checkpoint, lag, calls by state."
    )
    reasons: list[str] = Field(default_factory=list, description="Set when no connection is configured.")
    recommendations: list[str] = Field(default_factory=list)


async def outbox_numbers(rt: Runtime, names: list[str]) -> tuple[dict[str, dict[str, Any]], int]:
    """Each connection's backlog, dead letters, webhooks and delivery over 1 h, 24 h and the
    health window (`crm_mcp.views.connection_numbers`, as sync://status uses: one grouped read
    for all of them), and the live workers."""
    from sqlalchemy import func, select

    from crm_mcp.state.models import WorkerHeartbeat

    windows = {"1h": 3600.0, "24h": 86400.0, "window": rt.settings.health_window_seconds}
    numbers = await connection_numbers(rt, names, windows=windows)
    db = await rt.database()
    async with db.sessions() as s:
        live = (
            await s.execute(
                select(func.count())
                .select_from(WorkerHeartbeat)
                .where(WorkerHeartbeat.seen_at >= rt.clock() - timedelta(seconds=30))
            )
        ).scalar_one()
    return numbers, int(live)


async def check_one(
    rt: Runtime, name: str, provider: str, numbers: dict[str, Any], live: int
) -> ConnectionHealth:
    """Check the connection now (the preflight, whose result is stored for the write tools too),
    and judge it with its outbox `numbers` (from `outbox_numbers`)."""
    from crm_mcp.connectors.http import current_snapshot
    from crm_mcp.preflight import run_preflight

    declared = get_provider(provider)
    h = ConnectionHealth(
        connection=name,
        provider=provider,
        capabilities=sorted(declared.capabilities),
        verdict="healthy",
        credentials_valid=None,
    )
    started = time.perf_counter()
    [check] = await run_preflight(rt, [name])
    token = next((c for c in check.checks if c.name == "token"), None)
    h.credentials_valid = token.ok if token is not None else None
    failed = check.failure
    h.check_error = failed.detail if failed is not None else None
    if h.credentials_valid and failed is None:
        h.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    snap = await current_snapshot(rt.cached_connectors().get(name))
    if snap is not None:
        for key, value in quota(snap).items():
            setattr(h, key, value)
    numbers = dict(numbers)
    window = Window(
        rt.settings.health_window_seconds, numbers.pop("success_rate_window"), numbers.pop("attempts_window")
    )
    for key, value in numbers.items():
        setattr(h, key, value)
    return judge(h, rt.settings.health, live, window=window, preflight=check)


async def pipeline_health(
    rt: Runtime, results: list[ConnectionHealth]
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The call-log pipeline's state, with the token state of both of its sides, and what is wrong
    with it: a failed last pull, or a pull that fell behind (three intervals without one)."""
    from crm_mcp.sync.call_pull import endpoints, pipeline_status

    try:
        source, target = endpoints(rt)
    except CRMError:
        return [], [], []
    tokens = {r.connection: r.credentials_valid for r in results}
    behind = 3 * max(rt.settings.calls_interval, 60.0)
    pipeline, reasons, todo = [], [], []
    for row in await pipeline_status(rt) or [{"source": source, "last_run_at": None, "lag_seconds": None}]:
        row = {
            **row,
            "target": target,
            "tokens_valid": {source: tokens.get(source), target: tokens.get(target)},
        }
        pipeline.append(row)
        if row.get("last_error"):
            reasons.append(f"The last call-log pull from {row['source']} failed: {row['last_error']}")
            todo.append(f"Fix the {row['source']} connection (see its checks above); the next pull retries.")
        elif row.get("lag_seconds") is not None and row["lag_seconds"] > behind:
            reasons.append(f"The call-log pull is {row['lag_seconds'] // 60} min behind {row['source']}.")
            todo.append("Check that a worker runs (`crm-mcp worker`) and CRM_MCP_CALLS_INTERVAL.")
    return pipeline, reasons, todo


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
        """Check each connection now (credentials, latency, quota, breaker, backlog, dead letters,
        webhooks) and give a verdict with reasons and what to do."""
        from crm_mcp.errors import redact

        targets = [rt.connection(connection)] if connection else rt.connections()
        if not targets:
            from crm_mcp.preflight import no_connection_advice

            reason, advice = no_connection_advice()
            return HealthReport(
                checked_at=rt.clock(),
                verdict="unhealthy",
                connections=[],
                live_workers=0,
                thresholds={"window_seconds": rt.settings.health_window_seconds},
                reasons=[reason],
                recommendations=[advice],
            )
        numbers, live = await outbox_numbers(rt, [c.name for c in targets])
        results = []
        for conn in targets:
            h = await check_one(rt, conn.name, conn.provider, numbers[conn.name], live)
            h.check_error = redact(h.check_error) if h.check_error else None
            results.append(h)
        t = rt.settings.health
        pipeline, reasons, todo = await pipeline_health(rt, results)
        worst = max((r.verdict for r in results), key=_RANK.__getitem__, default="healthy")
        if reasons and worst == "healthy":
            worst = "degraded"
        return HealthReport(
            checked_at=rt.clock(),
            verdict=worst,
            connections=results,
            live_workers=live,
            call_pipeline=pipeline,
            reasons=reasons,
            recommendations=todo,
            thresholds={
                "min_success_rate": t.min_success_rate,
                "max_dead_letters": t.max_dead_letters,
                "max_latency_s": t.max_latency_s,
                "max_oldest_pending_s": t.max_oldest_pending_s,
                "window_seconds": rt.settings.health_window_seconds,
            },
        )

"""Process entry points: `serve` (MCP transport + worker) and `worker` (outbox worker alone).

The MCP transport starts first; database migration and the worker start in the background right
after, so the handshake is never delayed by SQLAlchemy or alembic imports.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any, Literal

import anyio

from crm_mcp.background import run_background_checks
from crm_mcp.observability.logging import adopt_uvicorn_logging
from crm_mcp.runtime import Runtime
from crm_mcp.settings import Settings

log = logging.getLogger(__name__)

Transport = Literal["stdio", "sse", "http"]


def start_sandboxes(
    settings: Settings, stack: ExitStack | AsyncExitStack, fault: dict[str, Any] | None = None
) -> Settings:
    """Start every registered provider's simulator on loopback and point a connection at each,
    with a throwaway database unless one is configured. Stopped when `stack` closes. `fault`:
    a rule for every simulator (`crm_mcp.sandbox.faults.fault_from_flag`, `serve --sandbox --fail`)."""
    from crm_mcp.connectors.registry import providers

    started: list[str] = []  # the first (by name) serves calls that name no connection
    for provider in providers():
        if provider.sandbox is None:
            continue
        started.append(provider.name)
        handle = provider.sandbox(0)
        stack.callback(handle.stop)
        if fault is not None:
            handle.faults.set(**fault)
        options = handle.connection_options()
        # the sandbox replaces how the CRM is reached; webhook keys the user set explicitly stay
        mine = settings.provider_settings(provider.name)
        for key in mine.model_fields_set & options.keys():
            if key.startswith("webhook_") or key == "app_secret":
                del options[key]
        settings = settings.with_provider(provider.name, **options)
        log.info("%s sandbox at %s", provider.title, handle.url)
    update: dict[str, Any] = {
        "sandbox": True,
        "default_connection": settings.default_connection or started[0],
    }
    if not settings.database_url:
        tmp = Path(tempfile.mkdtemp(prefix="crm-mcp-sandbox-"))
        update["database_url"] = f"sqlite+aiosqlite:///{tmp / 'sandbox.db'}"
    copy = settings.model_copy(update=update)
    copy._provider_overrides = settings._provider_overrides
    return copy


async def run_worker_loop(rt: Runtime, stop: asyncio.Event | None = None) -> None:
    """Warm up (imports, migrations), then deliver the outbox and process the inbox until cancelled."""
    await rt.warm_up()
    from crm_mcp.sync.call_pull import run_calls_loop

    worker = await build_worker(rt)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_inbox_loop, rt, stop)
        tg.start_soon(run_calls_loop, rt, stop)
        tg.start_soon(_retention, rt, stop)
        await worker.run_forever(stop)
        tg.cancel_scope.cancel()


async def _retention(rt: Runtime, stop: asyncio.Event | None) -> None:
    """Prune old succeeded operations, their log and processed webhook events (CRM_MCP_RETENTION_DAYS)."""
    from crm_mcp.sync.retention import run_retention_loop

    await run_retention_loop(rt.database, days=rt.settings.retention_days, clock=rt.clock, stop=stop)


async def run_inbox_loop(rt: Runtime, stop: asyncio.Event | None = None, interval_s: float = 2.0) -> None:
    """Apply stored webhook events to local records. The webhook route processes right after it
    answers; this loop picks up whatever a crash or a failed pass left behind."""
    from crm_mcp.sync.inbox import process_pending

    db = await rt.database()
    while stop is None or not stop.is_set():
        try:
            done = await process_pending(db, now=rt.clock())
        except Exception:
            log.exception("inbox pass failed; retrying after a pause")
            done = 0
        if done:
            rt.touch()
        else:
            await asyncio.sleep(interval_s)


async def build_worker(rt: Runtime) -> Any:
    from crm_mcp.sync.actions import build_handlers
    from crm_mcp.sync.call_pull import record_outcome, remembered
    from crm_mcp.sync.calls import build_calls_handlers
    from crm_mcp.sync.lead_actions import build_lead_handlers
    from crm_mcp.sync.records import build_records_handlers
    from crm_mcp.sync.worker import OutboxWorker

    db = await rt.database()
    s = rt.settings

    def connector_for(name: str) -> Any:
        return rt.connector(name)

    handlers = {
        **build_handlers(db, connector_for, rt.clock),
        **build_lead_handlers(db, connector_for, rt.clock),
        **build_records_handlers(connector_for),
        **build_calls_handlers(connector_for, record_outcome, functools.partial(remembered, db)),
    }
    return OutboxWorker(
        db,
        handlers,
        concurrency=s.worker_concurrency,
        lease=_seconds(s.lease_seconds),
        poll_interval=s.poll_interval_seconds,
        clock=rt.clock,
        backoff_base=s.sync_backoff_base_seconds,
        backoff_cap=s.sync_backoff_cap_seconds,
        max_attempts=s.sync_max_attempts,
        on_change=rt.touch,
        metrics=rt.metrics,
        per_connection=s.worker_per_connection,
        connection_caps=functools.partial(connection_caps, rt),
    )


COLD_CAP = 2  # a connection's cap until its CRM has answered once (its latency is not known yet)


def connection_caps(rt: Runtime) -> dict[str, int]:
    """Per connection, how many of its operations may be in flight at once: what its rate limit
    keeps busy at the latency seen (`useful_concurrency` of its client's limiter). More would only
    wait in the limiter holding slots, while other connections' operations wait for a slot: one
    tenant's backlog would hold back every other's. Until a connection has been used and answered
    (no connector yet, or no latency seen), COLD_CAP: otherwise the first claim beside a backlog,
    made before any answer, would take every slot for it. A connection whose limiter cannot say
    is not capped; CRM_MCP_WORKER_PER_CONNECTION, when set, replaces all of these."""
    cached = rt.cached_connectors()
    caps = {}
    for conn in rt.connections():
        connector = cached.get(conn.name)
        if connector is None:
            caps[conn.name] = COLD_CAP
            continue
        limiter = getattr(getattr(connector, "client", None), "limiter", None)
        useful = getattr(limiter, "useful_concurrency", None)
        if callable(useful):
            cap = useful()
            caps[conn.name] = cap if isinstance(cap, int) else COLD_CAP
    return caps


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


async def serve(
    settings: Settings,
    *,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    sandbox: bool = False,
    worker: bool = True,
    sandbox_fault: dict[str, Any] | None = None,
) -> None:
    # lazy, as in every entry point here: the MCP SDK loads only once a transport is chosen
    from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE as MAX_BODY

    from crm_mcp.server import limits
    from crm_mcp.server.app import build_server
    from crm_mcp.server.event_store import DEFAULT_RETRY_MS, InMemoryEventStore
    from crm_mcp.server.security import answered_hosts, http_auth, log_host_check, transport_security

    auth = http_auth(settings, transport, host, port)  # refuse before anything starts
    async with AsyncExitStack() as stack:
        if sandbox:
            settings = start_sandboxes(settings, stack, sandbox_fault)
        rt = Runtime(settings)
        stack.push_async_callback(rt.aclose)
        if transport != "stdio":
            settings.principals()  # a [principals.*] table naming no connection refuses to start

        server = build_server(rt, defer_catalogue=True, http_host=host, http_auth=auth)
        if server.watcher is not None:
            stack.push_async_callback(server.watcher.aclose)
        answered = answered_hosts(settings)
        if transport != "stdio":
            log_host_check(host, answered)
            adopt_uvicorn_logging()  # uvicorn's lines in our log format (docs/observability.md)
        security = transport_security(host, answered)

        async with anyio.create_task_group() as tg:
            tg.start_soon(server.complete_catalogue)
            tg.start_soon(run_background_checks, rt)  # connection preflight; never delays initialize
            if auth is not None:
                tg.start_soon(auth.warm_up)  # OAuth: logs the issuer's signing keys, or why not
            if worker:
                tg.start_soon(run_worker_loop, rt)
            else:
                tg.start_soon(rt.warm_up)
            if transport == "stdio":
                await server.run_stdio_async()
            elif transport == "http":
                app = server.streamable_http_app(
                    host=host,
                    transport_security=security,
                    event_store=InMemoryEventStore(),  # resumable streams: replay after a reconnect
                    retry_interval=DEFAULT_RETRY_MS,
                    max_sessions=settings.max_sessions,
                )
                # per-principal rates, Retry-After on a full server (docs/tenants.md)
                limits.install(app, settings, auth_required=auth is not None, max_body=MAX_BODY)
                await _serve_app(app, host, port, server.settings.log_level)
            else:
                await server.run_sse_async(host=host, port=port, transport_security=security)
            tg.cancel_scope.cancel()


async def _serve_app(app: Any, host: str, port: int, log_level: str) -> None:
    import uvicorn

    await uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())).serve()


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    webhooks_port: int | None = None,
    webhooks_host: str = "127.0.0.1",
    http_port: int | None = None,
    http_host: str = "127.0.0.1",
) -> None:
    """`crm-mcp worker`: the outbox worker alone, optionally receiving webhooks for stdio setups
    (`webhooks_port`) or serving /healthz, /readyz, /metrics, /dashboard and /webhooks
    (`http_port`, `crm_mcp.server.worker_http`; the same token rules as `serve`)."""
    auth = None
    if http_port is not None:
        from crm_mcp.server.security import http_auth

        auth = http_auth(settings, "http", http_host, http_port)  # refuse before anything starts
        if webhooks_port == http_port and webhooks_host == http_host:
            webhooks_port = None  # the HTTP server receives them already
    rt = Runtime(settings)
    try:
        async with anyio.create_task_group() as tg:
            if http_port is not None:
                tg.start_soon(_serve_http, rt, http_host, http_port, auth)
                if auth is not None:
                    tg.start_soon(auth.warm_up)  # OAuth: logs the issuer's signing keys, or why not
            if webhooks_port is not None:
                tg.start_soon(_serve_webhooks, rt, webhooks_host, webhooks_port)
            tg.start_soon(run_background_checks, rt)
            await run_worker_loop(rt, stop)
            tg.cancel_scope.cancel()
    finally:
        await rt.aclose()


async def _serve_webhooks(rt: Runtime, host: str, port: int) -> None:
    import uvicorn

    from crm_mcp.server.webhooks import build_webhook_app

    adopt_uvicorn_logging()
    config = uvicorn.Config(build_webhook_app(rt), host=host, port=port, log_level="warning")
    log.info("receiving webhooks at http://%s:%d/webhooks/{provider}/{connection}", host, port)
    await uvicorn.Server(config).serve()


async def _serve_http(rt: Runtime, host: str, port: int, auth: Any) -> None:
    import uvicorn

    from crm_mcp.server.security import answered_hosts, log_host_check
    from crm_mcp.server.worker_http import build_worker_app

    adopt_uvicorn_logging()
    log_host_check(host, answered_hosts(rt.settings))
    app = build_worker_app(rt, host=host, auth=auth)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    log.info("worker HTTP at http://%s:%d (/dashboard /metrics /healthz /readyz /webhooks)", host, port)
    await uvicorn.Server(config).serve()

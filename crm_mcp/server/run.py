"""Process entry points: `serve` (MCP transport + worker) and `worker` (outbox worker alone).

The MCP transport starts first; database migration and the worker start in the background right
after, so the handshake is never delayed by SQLAlchemy or alembic imports.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any, Literal

import anyio

from crm_mcp.runtime import Runtime
from crm_mcp.settings import Settings

log = logging.getLogger(__name__)

Transport = Literal["stdio", "sse", "http"]


def start_sandboxes(settings: Settings, stack: ExitStack | AsyncExitStack) -> Settings:
    """Start every registered provider's simulator on loopback and point a connection at each,
    with a throwaway database unless one is configured. Stopped when `stack` closes."""
    from crm_mcp.connectors.registry import providers

    started: list[str] = []  # the first (by name) serves calls that name no connection
    for provider in providers():
        if provider.sandbox is None:
            continue
        started.append(provider.name)
        handle = provider.sandbox(0)
        stack.callback(handle.stop)
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
    worker = await build_worker(rt)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_inbox_loop, rt, stop)
        await worker.run_forever(stop)
        tg.cancel_scope.cancel()


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
    )


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
) -> None:
    # lazy, as in every entry point here: the MCP SDK loads only once a transport is chosen
    from crm_mcp.server.app import build_server
    from crm_mcp.server.event_store import DEFAULT_RETRY_MS, InMemoryEventStore
    from crm_mcp.server.security import log_host_check, required_token, transport_security

    token = required_token(settings, transport, host)  # refuse before anything starts
    async with AsyncExitStack() as stack:
        if sandbox:
            settings = start_sandboxes(settings, stack)
        rt = Runtime(settings)
        stack.push_async_callback(rt.aclose)

        auth_kwargs = {"http_token": token, "public_url": f"http://{host}:{port}"} if token else {}
        server = build_server(rt, defer_catalogue=True, **auth_kwargs)
        if server.watcher is not None:
            stack.push_async_callback(server.watcher.aclose)
        if transport != "stdio":
            log_host_check(host, settings.allowed_hosts)
        security = transport_security(host, settings.allowed_hosts)

        async with anyio.create_task_group() as tg:
            tg.start_soon(server.complete_catalogue)
            if worker:
                tg.start_soon(run_worker_loop, rt)
            else:
                tg.start_soon(rt.warm_up)
            if transport == "stdio":
                await server.run_stdio_async()
            elif transport == "http":
                await server.run_streamable_http_async(
                    host=host,
                    port=port,
                    transport_security=security,
                    event_store=InMemoryEventStore(),  # resumable streams: replay after a reconnect
                    retry_interval=DEFAULT_RETRY_MS,
                )
            else:
                await server.run_sse_async(host=host, port=port, transport_security=security)
            tg.cancel_scope.cancel()


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    webhooks_port: int | None = None,
    webhooks_host: str = "127.0.0.1",
) -> None:
    """`crm-mcp worker`: the outbox worker alone, optionally receiving webhooks for stdio setups."""
    rt = Runtime(settings)
    try:
        async with anyio.create_task_group() as tg:
            if webhooks_port is not None:
                tg.start_soon(_serve_webhooks, rt, webhooks_host, webhooks_port)
            await run_worker_loop(rt, stop)
            tg.cancel_scope.cancel()
    finally:
        await rt.aclose()


async def _serve_webhooks(rt: Runtime, host: str, port: int) -> None:
    import uvicorn

    from crm_mcp.server.webhooks import build_webhook_app

    config = uvicorn.Config(build_webhook_app(rt), host=host, port=port, log_level="warning")
    log.info("receiving webhooks at http://%s:%d/webhooks/{provider}/{connection}", host, port)
    await uvicorn.Server(config).serve()

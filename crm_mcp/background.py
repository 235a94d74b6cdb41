"""What `serve` and `worker` do in the background for the other processes: check connections
and publish this process's breakers.

- The preflight (`crm_mcp.preflight`) runs at start and every `CRM_MCP_PREFLIGHT_INTERVAL_SECONDS`
  (0: at start only); its results go to the database.
- Every few seconds the breaker and rate-limit snapshot of each connector this process has built
  is republished (`state.connection_state`), so `crm-mcp status`, a separate process whose own
  breakers have never seen a request, shows the server's. A clean stop withdraws them.

Both start after `Runtime.warm_up()` and run side by side, so neither the MCP handshake nor the
published state ever waits for a CRM that is slow to answer its check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from crm_mcp.preflight import run_preflight

if TYPE_CHECKING:
    from crm_mcp.runtime import Runtime

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 5.0


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def publish_guards(rt: Runtime, process: str) -> None:
    """Store this process's breaker / limiter snapshot of each connector it has built."""
    from crm_mcp.connectors.http import current_snapshot
    from crm_mcp.state.connection_state import publish_guards as store

    snaps: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, connector in rt.cached_connectors().items():
        snap = await current_snapshot(connector)
        if snap is not None:
            snaps[name] = (connector.provider, _jsonable(snap))
    db = await rt.database()
    async with db.begin_write() as session:
        await store(session, process=process, snapshots=snaps, now=rt.clock())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def run_background_checks(
    rt: Runtime, *, stop: asyncio.Event | None = None, publish_every_s: float = PUBLISH_EVERY_S
) -> None:
    """Preflight at start and every `preflight_interval_seconds` (0: at start only), and publish
    this process's breakers every `publish_every_s`, until cancelled or `stop` is set. The two
    run side by side, so a CRM slow to answer its check never makes the published state stale.

    Never raises once the database is open: a failed pass is logged and tried again later.
    """
    await rt.warm_up()  # imports and migrations off the event loop first: never delays a handshake
    process = process_id()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_check_loop, rt, stop)
            await _publish_loop(rt, process, stop, publish_every_s)
            tg.cancel_scope.cancel()
    finally:
        with anyio.move_on_after(5, shield=True):  # a clean stop takes this process's rows along
            await _withdraw(rt, process)


def _stopped(stop: asyncio.Event | None) -> bool:
    return stop is not None and stop.is_set()


async def _check_loop(rt: Runtime, stop: asyncio.Event | None) -> None:
    interval = rt.settings.preflight_interval_seconds
    while not _stopped(stop):
        try:
            await run_preflight(rt)
        except Exception:
            log.exception("preflight failed; tried again at the next interval")
        if interval <= 0:
            return
        await asyncio.sleep(interval)


async def _publish_loop(rt: Runtime, process: str, stop: asyncio.Event | None, every_s: float) -> None:
    while not _stopped(stop):
        try:
            await publish_guards(rt, process)
        except Exception:
            log.debug("could not publish breaker state", exc_info=True)
        await asyncio.sleep(every_s)


async def _withdraw(rt: Runtime, process: str) -> None:
    from crm_mcp.state.connection_state import withdraw_guards

    try:
        db = await rt.database()
        async with db.begin_write() as session:
            await withdraw_guards(session, process)
    except Exception:
        log.debug("could not withdraw breaker state", exc_info=True)

"""The scheduled retention pass inside the worker (what is pruned: `crm_mcp.state.retention`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from crm_mcp.state.db import Database
from crm_mcp.state.retention import prune

log = logging.getLogger(__name__)

RETENTION_EVERY = 3600.0  # seconds between passes; the first runs a minute after start
FIRST_PASS_AFTER = 60.0


async def run_retention_loop(
    database: Callable[[], Awaitable[Database]],
    *,
    days: float,
    clock: Callable[[], datetime],
    stop: asyncio.Event | None = None,
    every: float = RETENTION_EVERY,
    first_after: float = FIRST_PASS_AFTER,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Prune every `every` seconds until `stop` is set (or cancelled). `days` <= 0: never prune.
    A failed pass is logged and tried again at the next interval."""
    if days <= 0:
        return
    age = timedelta(days=days)
    await sleep(first_after)
    while stop is None or not stop.is_set():
        try:
            done = await prune(await database(), now=clock(), age=age)
            if done.total:
                log.info(
                    "retention: pruned %d succeeded operations, %d sync-log rows, %d resolved dead "
                    "letters, %d processed webhook events (older than %g days)",
                    done.operations,
                    done.sync_log,
                    done.dead_letters,
                    done.inbox_events,
                    days,
                )
        except Exception:
            log.exception("retention pass failed; trying again in %g s", every)
        await sleep(every)

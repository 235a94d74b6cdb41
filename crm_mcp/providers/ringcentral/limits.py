"""RingCentral's rate-limit groups as one `RateLimiterLike`: a limiter per usage-plan group.

RingCentral counts requests per (user, app) per group — Light, Medium, Heavy, Auth — each in its
own sliding 60 s window, and reports the group a request drew on in `X-Rate-Limit-Group`, with
`-Limit`, `-Remaining` and `-Window` (seconds). One connection-wide window would mix a Light
answer's "50 left" with a Heavy one's "2 left", so each group gets the shared layer's
`RateLimiter`, and the connector says which group a call draws on (`with limits.group("heavy")`:
a context variable, so concurrent calls in other tasks keep their own). A 429 pauses only its
group: for Retry-After seconds, else RingCentral's 60 s penalty — and the limiter sends nothing
during the pause, since every request sent inside a penalty restarts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from crm_mcp.connectors.ratelimit import RateLimiter, int_header

from .spec import (
    GROUP_HEADER,
    GROUP_LIMITS,
    LIMIT_HEADER,
    PENALTY_S,
    REMAINING_HEADER,
    WINDOW_HEADER,
    WINDOW_S,
)

_WINDOW_MS = "x-window-ms"  # the window header translated to what RateLimiter reads (milliseconds)
_current: ContextVar[str] = ContextVar("ringcentral_rate_group", default="heavy")


class GroupLimits:
    """Per-group limiters, learned from each answer's group headers. One event loop."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_wait_s: float = 90.0,
        limits: Mapping[str, int] = GROUP_LIMITS,
    ) -> None:
        # waits up to a penalty and a half: RingCentral's windows are a minute long by design
        self.groups = {
            name: RateLimiter(
                limit=limit,
                interval_s=WINDOW_S,
                max_wait_s=max_wait_s,
                clock=clock,
                sleep=sleep,
                remaining_header=REMAINING_HEADER,
                limit_header=LIMIT_HEADER,
                interval_ms_header=_WINDOW_MS,
            )
            for name, limit in limits.items()
        }

    @staticmethod
    @contextmanager
    def group(name: str) -> Iterator[None]:
        """Calls made inside draw on group `name` (light / medium / heavy / auth)."""
        token = _current.set(name)
        try:
            yield
        finally:
            _current.reset(token)

    def _limiter(self, name: str | None = None) -> RateLimiter:
        return self.groups.get((name or _current.get()).lower(), self.groups["heavy"])

    async def acquire(self) -> None:
        await self._limiter().acquire()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Complete the request in the group it was sent under; learn into the group the answer names."""
        sent = self._limiter()
        named = headers.get(GROUP_HEADER)
        told = self._limiter(named) if named else sent
        learned: dict[str, str] = {}
        for name in (LIMIT_HEADER, REMAINING_HEADER):
            if (value := headers.get(name)) is not None:
                learned[name] = value
        window = int_header(headers, WINDOW_HEADER)
        if window and window > 0:
            learned[_WINDOW_MS] = str(window * 1000)
        # an answer from another group than the call was sent under would teach the wrong
        # window its numbers: it completes the request and teaches nothing
        sent.observe(learned if told is sent else {})

    def note_429(self, retry_after: float | None) -> None:
        self._limiter().note_429(PENALTY_S if retry_after is None else retry_after)

    def snapshot(self) -> dict[str, Any]:
        heavy = self.groups["heavy"].snapshot()
        return {**heavy, "groups": {name: rl.snapshot() for name, rl in self.groups.items()}}

"""HubSpot's rate limits, on the simulator's clock.

Three budgets, kept apart because a client must treat them apart:

* the burst window per app per account (default 100 per 10 s), reported on every API answer as
  ``X-HubSpot-RateLimit-Interval-Milliseconds``/``-Max``/``-Remaining``; a 429 names policy
  ``TEN_SECONDLY_ROLLING`` and (configurably) carries ``Retry-After``;
* the daily budget (default 250,000) of private-app calls, reported as
  ``X-HubSpot-RateLimit-Daily``/``-Daily-Remaining`` only on private-app calls — OAuth apps have no
  daily limit — and reset at midnight in the portal's time zone;
* the search API's own 4 requests per second per account, answered 429 ``SECONDLY`` with no
  ``Retry-After`` and not reported in any header.

A request that is refused does not use up budget.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from crm_mcp.providers.hubspot.sandbox.config import HubSpotSandboxConfig

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Rejection:
    policy: str
    message: str
    retry_after: int | None = None


BURST = "TEN_SECONDLY_ROLLING"
DAILY = "DAILY"
SECONDLY = "SECONDLY"


class RateLimits:
    def __init__(self, config: HubSpotSandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._burst: dict[str, deque[float]] = {}
        self._search: deque[float] = deque()
        self._daily_day = ""
        self._daily_used = 0

    def reset(self) -> None:
        with self._lock:
            self._burst.clear()
            self._search.clear()
            self._daily_day, self._daily_used = "", 0

    # ------------------------------------------------------------------ state
    def _window(self, app: str, now: float) -> deque[float]:
        hits = self._burst.setdefault(app, deque())
        window = self.config.burst_interval_ms / 1000
        while hits and hits[0] <= now - window:
            hits.popleft()
        return hits

    def _daily(self, now: float) -> int:
        day = datetime.fromtimestamp(now, ZoneInfo(self.config.time_zone)).date().isoformat()
        if day != self._daily_day:
            self._daily_day, self._daily_used = day, 0
        return self._daily_used

    def _headers(self, burst_used: int, daily_used: int | None) -> Headers:
        c = self.config
        values = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": c.burst_interval_ms,
            "X-HubSpot-RateLimit-Max": c.burst_max,
            "X-HubSpot-RateLimit-Remaining": max(0, c.burst_max - burst_used),
        }
        if daily_used is not None:
            values["X-HubSpot-RateLimit-Daily"] = c.daily_limit
            values["X-HubSpot-RateLimit-Daily-Remaining"] = max(0, c.daily_limit - daily_used)
        return [(k.encode(), str(v).encode()) for k, v in values.items()]

    # ------------------------------------------------------------------ checks
    def peek(self, app: str, private_app: bool) -> Headers:
        with self._lock:
            now = self.config.clock()
            hits = self._window(app, now)
            return self._headers(len(hits), self._daily(now) if private_app else None)

    def admit(self, app: str, private_app: bool, *, search: bool = False) -> tuple[Rejection | None, Headers]:
        """Count one API call against every budget it draws on, or against none if one refuses it."""
        with self._lock:
            c, now = self.config, self.config.clock()
            hits = self._window(app, now)
            daily = self._daily(now) if private_app else None
            if daily is not None and daily >= c.daily_limit:
                return Rejection(DAILY, "You have reached your daily limit."), self._headers(len(hits), daily)
            if len(hits) >= c.burst_max:
                wait = hits[0] + c.burst_interval_ms / 1000 - now
                retry = max(1, math.ceil(wait)) if c.retry_after_on_429 else None
                rejection = Rejection(BURST, "You have reached your ten_secondly_rolling limit.", retry)
                return rejection, self._headers(c.burst_max, daily)
            if search and not self._search_slot(now):
                secondly = Rejection(SECONDLY, "You have reached your secondly limit.")
                return secondly, self._headers(len(hits), daily)
            hits.append(now)
            if daily is not None:
                daily = self._daily_used = daily + 1
            return None, self._headers(len(hits), daily)

    def _search_slot(self, now: float) -> bool:
        """Take one of the search API's per-account slots for this second, if one is free."""
        while self._search and self._search[0] <= now - 1.0:
            self._search.popleft()
        if len(self._search) >= self.config.search_per_second:
            return False
        self._search.append(now)
        return True

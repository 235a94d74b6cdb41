"""RingCentral's usage-plan groups on the simulator's clock.

Each group (light / medium / heavy / auth) is a sliding window of `window_s` seconds with its own
limit, reported on every answer as `X-Rate-Limit-Group`, `-Limit`, `-Remaining`, `-Window`. Past
the limit: 429 `CMN-301` "Request rate exceeded" with `Retry-After` and a penalty of `penalty_s`
during which every request is refused — and restarts the penalty (crm-apis §4.5), which is what
punishes a client that retries early. `in_penalty` counts those early requests.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from .config import RingCentralSandboxConfig

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: Headers
    retry_after: int | None = None


class GroupWindows:
    def __init__(self, config: RingCentralSandboxConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._penalty: dict[str, float] = {}
        self.rejected = 0
        self.in_penalty = 0

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
            self._penalty.clear()
            self.rejected = self.in_penalty = 0

    def _headers(self, group: str, used: int) -> Headers:
        limit = self.config.group_limits.get(group, 10)
        values = {
            "X-Rate-Limit-Group": group,
            "X-Rate-Limit-Limit": limit,
            "X-Rate-Limit-Remaining": max(0, limit - used),
            "X-Rate-Limit-Window": self.config.window_s,
        }
        return [(k.encode(), str(v).encode()) for k, v in values.items()]

    def admit(self, group: str) -> Verdict:
        """Count one request, or refuse it (429) and start or restart the penalty."""
        cfg = self.config
        with self._lock:
            now = cfg.clock()
            hits = self._hits.setdefault(group, deque())
            while hits and hits[0] <= now - cfg.window_s:
                hits.popleft()
            limit = cfg.group_limits.get(group, 10)
            if now < self._penalty.get(group, 0.0):
                self.in_penalty += 1
            elif len(hits) < limit:
                hits.append(now)
                return Verdict(True, self._headers(group, len(hits)))
            self.rejected += 1
            self._penalty[group] = now + cfg.penalty_s
            retry = cfg.penalty_s if cfg.retry_after_on_429 else None
            return Verdict(False, self._headers(group, limit), retry)

    def peek(self, group: str) -> Headers:
        with self._lock:
            now = self.config.clock()
            used = sum(1 for t in self._hits.get(group, ()) if t > now - self.config.window_s)
            return self._headers(group, used)

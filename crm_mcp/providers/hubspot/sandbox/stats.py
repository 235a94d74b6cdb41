"""Request counters of the HubSpot simulator, for benchmarks and assertions.

Benchmarks compare connectors by how many HubSpot calls a sync costs per record, so besides the
per-route and per-status counts this keeps write *calls* and written *records* per object type and
the number of batch and search calls. Control endpoints (``/_sandbox``) are never counted.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

CallKind = Literal["read", "write", "search", "batch_read", "batch_write", "meta", "oauth"]


@dataclass(frozen=True)
class RouteInfo:
    """What a matched route is, for the counters: ``GET /crm/v3/objects/contacts/{contactId}``."""

    template: str
    kind: CallKind = "meta"
    object_type: str | None = None

    @property
    def writes(self) -> bool:
        return self.kind in ("write", "batch_write")

    @property
    def batch(self) -> bool:
        return self.kind.startswith("batch")


UNMATCHED = RouteInfo("(unmatched)")


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.faults_injected = 0
            self.by_status: Counter[str] = Counter()
            self.by_route: Counter[str] = Counter()
            self.rate_limited: Counter[str] = Counter()  # by policy name
            self.write_calls: Counter[str] = Counter()
            self.records_written: Counter[str] = Counter()
            self.batch_calls = 0
            self.search_calls = 0

    def record(self, route: str, status: int | None, *, faulted: bool = False) -> None:
        """One answered (or dropped: status None) request."""
        with self._lock:
            self.total += 1
            self.by_status["reset" if status is None else str(status)] += 1
            self.by_route[route] += 1
            self.faults_injected += faulted

    def record_rate_limited(self, policy: str) -> None:
        with self._lock:
            self.rate_limited[policy] += 1

    def record_admitted(self, info: RouteInfo) -> None:
        """A call that got past auth and limits, so reached the CRM's handlers."""
        with self._lock:
            if info.writes and info.object_type:
                self.write_calls[info.object_type] += 1
            self.batch_calls += info.batch
            self.search_calls += info.kind == "search"

    def record_written(self, object_type: str, count: int) -> None:
        with self._lock:
            self.records_written[object_type] += count

    def as_dict(self, token_grants: dict[str, int]) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "by_status": dict(self.by_status),
                "by_route": dict(self.by_route),
                "rate_limited": sum(self.rate_limited.values()),
                "rate_limited_by_policy": dict(self.rate_limited),
                "faults_injected": self.faults_injected,
                "token_grants": dict(token_grants),
                "write_calls": dict(self.write_calls),
                "records_written": dict(self.records_written),
                "batch_calls": self.batch_calls,
                "search_calls": self.search_calls,
            }

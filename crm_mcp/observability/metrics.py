"""Prometheus metrics for `/metrics`, in a registry of their own per runtime (not the global one:
one process may run several servers, as the tests do).

Counters and the delivery histogram count what happens in *this process*: tool calls where the
MCP server runs, deliveries where the outbox worker runs, webhooks where they are received. The
outbox gauges are read from the database at scrape time, so any process shows the whole outbox;
the quota gauges are this process's limiters. docs/observability.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# deliveries run from a few milliseconds (one upsert) to minutes (rate-limited multi-step writes)
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The metrics of one runtime and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tool_calls = Counter(
            "crm_mcp_tool_calls", "MCP tool calls by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.webhook_events = Counter(
            "crm_mcp_webhook_events",
            "Webhook deliveries received, accepted (stored, duplicate) or rejected, by reason.",
            ["connection", "outcome", "reason"],
            registry=r,
        )
        self.delivery_duration = Histogram(
            "crm_mcp_delivery_duration_seconds",
            "Duration of outbox delivery attempts in this process, by connection, action and outcome.",
            ["connection", "action", "outcome"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.operations = Gauge(
            "crm_mcp_operations", "Outbox operations by status (whole outbox).", ["status"], registry=r
        )
        self.dead_letters = Gauge("crm_mcp_dead_letters", "Operations in the dead-letter queue.", registry=r)
        self.success_ratio = Gauge(
            "crm_mcp_delivery_success_ratio",
            "Successful / finished delivery attempts in the status window (NaN when none).",
            registry=r,
        )
        self.oldest_pending = Gauge(
            "crm_mcp_oldest_pending_seconds", "Age of the oldest pending operation (0 when none).", registry=r
        )
        self.quota_remaining = Gauge(
            "crm_mcp_quota_remaining",
            "CRM requests left for this process, in the burst window or today, per connection.",
            ["connection", "window"],
            registry=r,
        )

    # -- events -------------------------------------------------------------------------------
    def tool_called(self, tool: str, outcome: str) -> None:
        self.tool_calls.labels(tool=tool, outcome=outcome).inc()

    def webhook(self, connection: str, outcome: str, reason: str) -> None:
        self.webhook_events.labels(connection=connection, outcome=outcome, reason=reason).inc()

    def delivered(self, connection: str, action: str, outcome: str, seconds: float) -> None:
        self.delivery_duration.labels(connection=connection, action=action, outcome=outcome).observe(seconds)

    # -- scrape ---------------------------------------------------------------------------------
    def update_status(self, status: Any) -> None:
        """Set the gauges from a `crm_mcp.state.status.SyncStatus` (with its `connectors`)."""
        for key, value in status.totals.items():
            self.operations.labels(status=key).set(value)
        self.dead_letters.set(status.dead_letters)
        rate = status.success_rate
        self.success_ratio.set(float("nan") if rate is None else rate)
        self.oldest_pending.set(status.oldest_pending_age_s or 0)
        for name, entry in (status.connectors or {}).items():
            quota: Mapping[str, Any] = entry.get("quota") or {}  # crm_mcp.views.quota, set per status
            for window in ("burst", "daily"):
                if (value := quota.get(f"{window}_remaining")) is not None:
                    self.quota_remaining.labels(connection=name, window=window).set(value)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

"""/metrics of a real `crm-mcp serve --transport http --sandbox` after real traffic, read with the
prometheus-client parser: names follow the conventions, every family has HELP, labels are right."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from crm_mcp.observability.metrics import Metrics
from crm_mcp.observability.middleware import webhook_outcome
from tests.observability.conftest import LiveRun


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family: Any, name: str, **labels: str) -> list[Any]:
    return [s for s in family.samples if s.name == name and labels.items() <= s.labels.items()]


def test_metric_names_types_and_help(live_run: LiveRun) -> None:
    found = families(live_run.metrics)
    expected = {
        "crm_mcp_tool_calls": "counter",
        "crm_mcp_webhook_events": "counter",
        "crm_mcp_delivery_duration_seconds": "histogram",
        "crm_mcp_operations": "gauge",
        "crm_mcp_dead_letters": "gauge",
        "crm_mcp_delivery_success_ratio": "gauge",
        "crm_mcp_oldest_pending_seconds": "gauge",
        "crm_mcp_quota_remaining": "gauge",
    }
    assert {name: found[name].type for name in expected if name in found} == expected
    assert all(found[name].documentation for name in expected)  # a HELP line each
    for family in found.values():
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
    assert "# HELP crm_mcp_tool_calls_total MCP tool calls by tool and outcome." in live_run.metrics


def test_tool_calls_and_deliveries_are_counted(live_run: LiveRun) -> None:
    found = families(live_run.metrics)
    calls = found["crm_mcp_tool_calls"]
    total = "crm_mcp_tool_calls_total"
    assert samples(calls, total, tool="search_contacts", outcome="success")[0].value == 1
    assert samples(calls, total, tool="create_appointment", outcome="success")[0].value == 1
    assert samples(calls, total, tool="create_appointment", outcome="error")[0].value == 1

    latency = found["crm_mcp_delivery_duration_seconds"]
    labels = {"connection": "gohighlevel", "action": "appointment.create", "outcome": "success"}
    assert samples(latency, "crm_mcp_delivery_duration_seconds_count", **labels)[0].value == 1
    buckets = samples(latency, "crm_mcp_delivery_duration_seconds_bucket", **labels)
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1

    operations = found["crm_mcp_operations"]
    assert samples(operations, "crm_mcp_operations", status="succeeded")[0].value == 1
    assert found["crm_mcp_delivery_success_ratio"].samples[0].value == 1.0


def test_quota_gauges_per_connection_and_window(live_run: LiveRun) -> None:
    quota = families(live_run.metrics)["crm_mcp_quota_remaining"]
    ghl = {s.labels["window"]: s.value for s in quota.samples if s.labels["connection"] == "gohighlevel"}
    assert set(ghl) == {"burst", "daily"} and ghl["burst"] > 0 and ghl["daily"] > 0
    assert {s.labels["connection"] for s in quota.samples} >= {"gohighlevel", "hubspot"}


def test_webhook_events_by_outcome_and_reason(live_run: LiveRun) -> None:
    hooks = families(live_run.metrics)["crm_mcp_webhook_events"]
    counted = {
        (s.labels["connection"], s.labels["outcome"], s.labels["reason"]): s.value
        for s in hooks.samples
        if s.name == "crm_mcp_webhook_events_total"
    }
    assert counted == {
        ("gohighlevel", "accepted", "stored"): 1,
        ("gohighlevel", "accepted", "duplicate"): 1,
        ("gohighlevel", "rejected", "signature"): 1,
        ("gohighlevel", "rejected", "unsupported_media_type"): 1,
        ("unknown", "rejected", "unknown_connection"): 1,  # a made-up name never becomes a label
    }


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.tool_called("search_contacts", "success")
    assert b"crm_mcp_tool_calls_total" in first.render()[0]
    assert b'tool="search_contacts"' not in second.render()[0]


def test_webhook_outcome() -> None:
    assert webhook_outcome(200, b'{"stored": 1}') == ("accepted", "stored")
    assert webhook_outcome(200, b'{"duplicate": true}') == ("accepted", "duplicate")
    assert webhook_outcome(403, b"{}") == ("rejected", "foreign_tenant")
    assert webhook_outcome(503, b"{}") == ("rejected", "busy")

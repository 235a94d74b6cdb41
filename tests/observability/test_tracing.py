"""The span tree of a real flow: a tool call through an MCP client, then the worker's delivery to the
GoHighLevel simulator over loopback, recorded by the SDK's in-memory exporter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from crm_mcp.observability.tracing import path_template
from crm_mcp.state.models import SyncOperation
from tests.harness import harness
from tests.observability.conftest import LiveRun

pytestmark = pytest.mark.anyio

BOOKING = {
    "first_name": "Trace",
    "email": "trace@example.com",
    "start_time": (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT15:00:00Z"),
    "title": "Tour",
}


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_tool_call_and_linked_delivery_span_tree(
    ghl_sandbox: Any, settings_factory: Any, spans: InMemorySpanExporter
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        await h.ok("search_contacts", {"query": "nobody"})  # reads the CRM inside the call
        booked = await h.ok("create_appointment", BOOKING)  # queues; the worker delivers
        sim.faults.set("rate_limit", count=1, retry_after=2)  # the delivery's first request: 429
        assert await h.deliver() == 1
        db = await h.runtime.database()
        async with db.sessions() as session:
            op = await session.get(SyncOperation, booked["sync_operation_id"])
        assert op is not None and op.status == "succeeded"
    finished = list(spans.get_finished_spans())

    # a tool call: our span under the MCP SDK's server span, its CRM requests under ours
    search = one(finished, "tool search_contacts")
    sdk_span = one(finished, "tools/call search_contacts")
    assert sdk_span.kind is SpanKind.SERVER and search.parent is not None
    assert search.parent.span_id == sdk_span.context.span_id
    reads = children(finished, search)
    assert reads and all(s.kind is SpanKind.CLIENT for s in reads)
    assert reads[0].attributes["crm_mcp.provider"] == "gohighlevel"
    assert reads[0].attributes["http.response.status_code"] == 200
    assert reads[0].attributes["crm_mcp.operation"] == reads[0].name

    # the write: its correlation id and trace context are stored with the operation
    create = one(finished, "tool create_appointment")
    correlation_id = create.attributes["crm_mcp.correlation_id"]
    assert op.correlation_id == correlation_id
    assert op.trace_context is not None
    assert op.trace_context["traceparent"].split("-")[1:3] == [
        format(create.context.trace_id, "032x"),
        format(create.context.span_id, "016x"),
    ]
    assert not children(finished, create)  # queued only: no CRM request inside the call

    # the delivery: a trace of its own, linked to the call, with the same correlation id
    deliver = one(finished, "deliver appointment.create")
    assert deliver.parent is None and deliver.context.trace_id != create.context.trace_id
    assert [link.context.span_id for link in deliver.links] == [create.context.span_id]
    assert deliver.attributes["crm_mcp.correlation_id"] == correlation_id
    assert deliver.attributes["crm_mcp.operation_id"] == op.id
    requests = children(finished, deliver)
    assert len(requests) >= 2  # contact upsert, appointment, note, task...
    for span in requests:
        attrs = span.attributes
        assert span.kind is SpanKind.CLIENT
        assert attrs["crm_mcp.provider"] == "gohighlevel" and attrs["crm_mcp.connection"] == "gohighlevel"
        assert attrs["crm_mcp.operation"].split(" ", 1)[0] in {"GET", "POST", "PUT", "DELETE"}
        assert "{id}" not in attrs["crm_mcp.operation"] or op.id not in attrs["crm_mcp.operation"]
        assert "http.response.status_code" in attrs
        assert "http.request.resend_count" in attrs and "crm_mcp.rate_limit_wait_s" in attrs
    retried = [s for s in requests if s.attributes["http.request.resend_count"] >= 1]
    assert len(retried) == 1, [(s.name, s.attributes["http.request.resend_count"]) for s in requests]
    assert retried[0].attributes["crm_mcp.rate_limit_wait_s"] >= 2  # waited out the Retry-After
    assert retried[0].attributes["http.response.status_code"] < 300


def test_path_template_hides_record_ids_and_emails() -> None:
    assert path_template("/contacts/") == "/contacts/"
    assert path_template("/contacts/ocQHyuzHvysMo5N5VsXc/notes") == "/contacts/{id}/notes"
    assert path_template("/crm/v3/objects/contacts/12345") == "/crm/v3/objects/contacts/{id}"
    assert path_template("/contacts/jane@example.com?x=1") == "/contacts/{id}"
    assert path_template("/calendars/events/appointments") == "/calendars/events/appointments"


def test_spans_are_exported_over_otlp_http(live_run: LiveRun) -> None:
    """`CRM_MCP_OTEL_ENDPOINT` on a real server: its spans reach the collector, delivery included."""
    names = {span.name for span in live_run.exported}
    assert {"tool search_contacts", "tool create_appointment", "deliver appointment.create"} <= names
    deliver = next(s for s in live_run.exported if s.name == "deliver appointment.create")
    create = next(s for s in live_run.exported if s.name == "tool create_appointment")
    assert [link.span_id for link in deliver.links] == [create.span_id]

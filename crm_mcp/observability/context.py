"""The correlation id and the log fields of the work in progress, held in context variables.

One correlation id is minted per tool call (`crm_mcp.observability.tracing.tool_call`). It is
stored with every outbox operation the call queues (the `sync_operations` column defaults read
it here), restored by the worker while it delivers that operation, and written on every log line
and every CRM request in between, next to the CRM's own request id. Context variables follow
asyncio tasks: a task started inside a scope sees its id, and nothing leaks out of the scope.

`bound(...)` also carries extra log fields (connection, operation_id, action) for every line
logged inside it; `trace_carrier()` is the W3C trace context of the current span, stored with an
operation so that its delivery span can link back to the tool call that queued it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import propagate
from opentelemetry import trace as otel_trace

_correlation_id: ContextVar[str | None] = ContextVar("crm_mcp_correlation_id", default=None)
_fields: ContextVar[Mapping[str, Any]] = ContextVar("crm_mcp_log_fields", default={})  # noqa: B039


def new_correlation_id() -> str:
    """A fresh id: 16 hex characters (64 random bits), short enough to read and grep."""
    return secrets.token_hex(8)


def current_correlation_id() -> str | None:
    """The correlation id of the work in progress (None outside a tool call or a delivery)."""
    return _correlation_id.get()


def correlation_id_for_new_work() -> str:
    """The current correlation id, or a new one for work that starts outside a tool call (an
    operation queued by a scheduled pull, a repair): every operation gets one to be followed by."""
    return _correlation_id.get() or new_correlation_id()


def log_fields() -> Mapping[str, Any]:
    """The extra fields every log line written now carries (connection, operation_id, ...)."""
    return _fields.get()


@contextmanager
def bound(correlation_id: str | None = None, **fields: Any) -> Iterator[str | None]:
    """Make `correlation_id` (when given) and `fields` current until the block ends; yields the id."""
    id_token = _correlation_id.set(correlation_id) if correlation_id is not None else None
    fields_token = _fields.set({**_fields.get(), **fields}) if fields else None
    try:
        yield _correlation_id.get()
    finally:
        if fields_token is not None:
            _fields.reset(fields_token)
        if id_token is not None:
            _correlation_id.reset(id_token)


def trace_carrier() -> dict[str, str] | None:
    """The current span's W3C trace context (`traceparent`, `tracestate`), or None when no span is
    recording (tracing off, or outside a tool call): what an operation stores to be linked to."""
    if not otel_trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")} or None

"""Spans, in the OpenTelemetry API the MCP SDK already uses; exported only when configured.

Three scopes, each a context manager the rest of the code enters in one line:

- `tool_call(name)` (in `crm_mcp.tools._base.crm_tool`): mints the call's correlation id and opens
  a span under the SDK's own `tools/call` span. An operation queued inside it stores both.
- `delivery(op)` (in the outbox worker): one span per delivery attempt, a new trace *linked* to the
  tool call's span (the call returned long ago), with the operation's correlation id restored.
- `crm_request(...)` (in `ResilientClient.request`): a child span per CRM request with the
  provider, operation (method + path template), HTTP status, retry count and rate-limit wait, and
  one log line carrying the CRM's own request id (DEBUG; INFO when it retried or waited, WARNING
  when it failed).

Without an SDK the API hands out non-recording spans: the scopes then cost a context variable and
a log line. `configure(endpoint)` installs the SDK with an OTLP/HTTP exporter (the `otel` extra).
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Link, SpanKind, StatusCode

from crm_mcp.errors import redact

from .context import bound, new_correlation_id

TRACER_NAME = "crm_mcp"
SLOW_WAIT_S = 1.0  # a rate-limit wait at least this long is worth a line at INFO
logger = logging.getLogger("crm_mcp.requests")  # one line per CRM request
log = logging.getLogger(__name__)


def _tracer() -> otel_trace.Tracer:
    # looked up per span, not at import: a provider installed later (configure, tests) applies
    return otel_trace.get_tracer(TRACER_NAME)


# -- tool calls ------------------------------------------------------------------------------------


@contextmanager
def tool_call(tool: str) -> Iterator[str]:
    """The scope of one tool call: a new correlation id (yielded) and a span named after the tool."""
    correlation_id = new_correlation_id()
    attributes = {"gen_ai.tool.name": tool, "crm_mcp.correlation_id": correlation_id}
    with (
        bound(correlation_id, tool=tool),
        _tracer().start_as_current_span(f"tool {tool}", attributes=attributes) as span,
    ):
        try:
            yield correlation_id
        except BaseException as exc:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise


# -- deliveries ------------------------------------------------------------------------------------


class Delivered(Protocol):
    """What the worker's operation row offers (the state model, without importing it)."""

    id: str
    connection: str
    action: str
    attempts: int
    correlation_id: str | None
    trace_context: dict[str, Any] | None


class DeliveryObserver(Protocol):
    def delivered(self, connection: str, action: str, outcome: str, seconds: float) -> None: ...


def _link_to(carrier: Mapping[str, Any] | None) -> list[Link]:
    if not carrier:
        return []
    span_context = otel_trace.get_current_span(propagate.extract(dict(carrier))).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def operation_fields(op: Delivered) -> dict[str, Any]:
    return {"operation_id": op.id, "connection": op.connection, "action": op.action}


@contextmanager
def delivery(op: Delivered, observer: DeliveryObserver | None = None) -> Iterator[None]:
    """One delivery attempt of `op`: its correlation id and fields on every log line, a root span
    linked to the tool call that queued it, and (with an observer) its duration and outcome."""
    attributes: dict[str, str | int] = {
        "crm_mcp.operation_id": op.id,
        "crm_mcp.connection": op.connection,
        "crm_mcp.action": op.action,
        "crm_mcp.attempt": op.attempts,
    }
    if op.correlation_id:
        attributes["crm_mcp.correlation_id"] = op.correlation_id
    started = time.perf_counter()
    outcome = "failure"
    with (
        bound(op.correlation_id, **operation_fields(op)),
        _tracer().start_as_current_span(
            f"deliver {op.action}",
            context=otel_context.Context(),  # a trace of its own, linked to the call's
            kind=SpanKind.CONSUMER,
            links=_link_to(op.trace_context),
            attributes=attributes,
        ) as span,
    ):
        try:
            yield
            outcome = "success"
        except BaseException as exc:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            if observer is not None:
                observer.delivered(op.connection, op.action, outcome, time.perf_counter() - started)


def in_operation_scope(op: Delivered, fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn` (an async callable) run with `op`'s correlation id and fields bound: for the write that
    records an attempt's outcome, which runs after the delivery scope has closed."""

    async def run() -> Any:
        with bound(op.correlation_id, **operation_fields(op)):
            return await fn()

    return run


# -- CRM requests ----------------------------------------------------------------------------------

# a path segment that names a record rather than a collection: has a digit (ids, dates, numbers,
# except short version segments such as v2), an @ (an email), or is long
_ID_SEGMENT = re.compile(r"^(?!v\d{1,2}$)(?=.*[0-9@]).+$|^.{25,}$")


def path_template(path: str) -> str:
    """`/contacts/abc123/notes` -> `/contacts/{id}/notes`: an operation name with bounded
    cardinality and no record ids or emails in it (span names, log lines, metric labels)."""
    bare = path.split("?", 1)[0]
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in bare.split("/"))


@dataclass
class RequestRecord:
    """What one CRM request did, filled in by the client as it goes."""

    attempts: int = 0
    rate_limit_wait_s: float = 0.0
    status: int | None = None
    crm_request_id: str | None = None

    def waited(self, seconds: float) -> None:
        self.rate_limit_wait_s += max(0.0, seconds)

    def answered(self, status: int, crm_request_id: str | None) -> None:
        self.status, self.crm_request_id = status, crm_request_id


@contextmanager
def crm_request(provider: str, connection: str, method: str, path: str) -> Iterator[RequestRecord]:
    """One CRM request (all its retries): a CLIENT span under the current one, and a log line
    with the correlation id, the operation, the status and the CRM's own request id."""
    template = path_template(path)
    operation = f"{method} {template}"
    record = RequestRecord()
    started = time.perf_counter()
    with _tracer().start_as_current_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={
            "crm_mcp.provider": provider,
            "crm_mcp.connection": connection,
            "crm_mcp.operation": operation,
            "http.request.method": method,
            "url.template": template,
        },
    ) as span:
        error: BaseException | None = None
        try:
            yield record
        except BaseException as exc:
            error = exc
            record.status = record.status or getattr(exc, "status", None)
            record.crm_request_id = record.crm_request_id or getattr(exc, "request_id", None)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            _finish(span, record, provider, connection, operation, started, error)


def _finish(
    span: otel_trace.Span,
    record: RequestRecord,
    provider: str,
    connection: str,
    operation: str,
    started: float,
    error: BaseException | None,
) -> None:
    retries = max(0, record.attempts - 1)
    attributes: dict[str, Any] = {
        "http.request.resend_count": retries,
        "crm_mcp.rate_limit_wait_s": round(record.rate_limit_wait_s, 3),
    }
    if record.status is not None:
        attributes["http.response.status_code"] = record.status
    if record.crm_request_id:
        attributes["crm_mcp.crm_request_id"] = record.crm_request_id
    if error is not None:
        attributes["error.type"] = type(error).__name__
    span.set_attributes(attributes)
    level = _level(error, retries, record.rate_limit_wait_s)
    if not logger.isEnabledFor(level):  # most requests: a plain success logged at DEBUG
        return
    fields = {
        "provider": provider,
        "connection": connection,
        "operation": operation,
        "status": record.status,
        "retries": retries,
        "rate_limit_wait_s": attributes["crm_mcp.rate_limit_wait_s"],
        "duration_ms": int((time.perf_counter() - started) * 1000),
        "crm_request_id": record.crm_request_id,
    }
    outcome = record.status if record.status is not None else type(error).__name__ if error else "?"
    logger.log(level, "crm request %s %s -> %s", provider, operation, outcome, extra=fields)


def _level(error: BaseException | None, retries: int, waited_s: float) -> int:
    """WARNING for a request that failed, INFO for one that needed retries or waited a second or
    more for the rate limiter, DEBUG for the plain successes (most of them: a busy server makes
    thousands, and a client that pipes stderr without reading it blocks once the pipe is full)."""
    if error is not None:
        return logging.WARNING
    return logging.INFO if retries or waited_s >= SLOW_WAIT_S else logging.DEBUG


# -- set-up ----------------------------------------------------------------------------------------


def configure(endpoint: str | None, *, service_name: str = "crm-mcp") -> bool:
    """Export spans over OTLP/HTTP to `endpoint` (a collector's base URL, e.g.
    http://127.0.0.1:4318, or its full /v1/traces URL). Returns whether tracing is on; without the
    `otel` extra installed it logs how to get it and stays off rather than failing the start."""
    if not endpoint:
        return False
    try:  # lazy: the SDK and the exporter are an optional extra, loaded only when asked for
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "CRM_MCP_OTEL_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
            "pip install 'crm-mcp[otel]'. Tracing stays off."
        )
        return False
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    otel_trace.set_tracer_provider(provider)
    _flush_on_sigterm(lambda: provider.force_flush(timeout_millis=5000))  # a dead collector: 5 s at most
    log.info("exporting traces to %s", redact(url))
    return True


def _flush_on_sigterm(flush: Callable[[], Any]) -> None:
    """Export the spans still batched when SIGTERM ends the process. Its default action skips
    `atexit` (where the SDK flushes), and uvicorn re-raises the signal once it has shut down; so
    the handler flushes, then lets the signal do what it did before."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def flush_then_terminate(signum: int, frame: Any) -> None:
        flush()
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, flush_then_terminate)

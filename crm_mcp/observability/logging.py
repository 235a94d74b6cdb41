"""Log lines on stderr: JSON for machines, or text for people (`CRM_MCP_LOG_FORMAT=json|text|auto`).

`auto` (the default) writes text when stderr is a terminal and JSON otherwise (a service manager,
a container, a client that captures the server's stderr). A JSON line holds `ts`, `level`,
`logger`, `message`, `correlation_id`, the fields bound by the current scope (`connection`,
`operation_id`, `action`, `tool`), any `extra=` fields of the call (a CRM request's `operation`,
`status`, `crm_request_id`, ...), the current trace and span ids when a span is recording, and
`exc` with the traceback. Every string in it is redacted (`crm_mcp.errors.redact`), as the text
is by the CLI's redacting filter.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import IO, Any, Literal

from opentelemetry import trace as otel_trace

from crm_mcp.errors import redact

from .context import current_correlation_id, log_fields

LogFormat = Literal["json", "text", "auto"]

# attributes every LogRecord has: anything else on a record came from `extra=` or a filter
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def resolve_format(fmt: str, stream: IO[str]) -> Literal["json", "text"]:
    """`auto`: text on a terminal, JSON otherwise."""
    if fmt in ("json", "text"):
        return fmt  # type: ignore[return-value]
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # a closed or odd stream
        return "json"


class ContextFilter(logging.Filter):
    """Stamps each record with the correlation id and the bound fields of the context it was
    logged in (a record may be formatted later, or elsewhere, than where it was made)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = current_correlation_id()
        for key, value in log_fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields with no value are left out, except `correlation_id`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "correlation_id": getattr(record, "correlation_id", None) or current_correlation_id(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in out and value is not None:
                out[key] = _plain(value)
        span = otel_trace.get_current_span().get_span_context()
        if span.is_valid:
            out.setdefault("trace_id", format(span.trace_id, "032x"))
            out.setdefault("span_id", format(span.span_id, "016x"))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = redact(record.exc_text)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with the correlation id in brackets when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        cid = getattr(record, "correlation_id", None)
        if cid:
            head, sep, rest = line.partition("\n")  # a traceback stays below the first line
            line = f"{head} [{cid}]{sep}{rest}"
        return redact(line) if record.exc_info else line


def build_handler(fmt: str, stream: IO[str]) -> logging.Handler:
    """A stream handler in the chosen format that stamps records with their context."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if resolve_format(fmt, stream) == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def adopt_uvicorn_logging() -> None:
    """Send uvicorn's own lines (startup, shutdown, errors) through the root handler, in the same
    format, instead of uvicorn's plain-text handlers. Call before a uvicorn server is configured."""
    from uvicorn.config import LOGGING_CONFIG  # lazy: only the HTTP transports load uvicorn

    LOGGING_CONFIG["loggers"] = {
        name: {"propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }

"""The one place that turns crm-mcp errors into tool errors, and the decorator every tool uses.

A tool error is written for the model: what failed, whether retrying helps, and what to do next.
Anything that is not a `CRMError` is a bug: it is logged with its traceback (to stderr) and the
model sees a short, secret-free message instead.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from crm_mcp.errors import (
    CircuitOpenError,
    CRMError,
    RateLimitedError,
    redact,
)
from crm_mcp.observability.tracing import tool_call
from crm_mcp.preflight import write_warning
from crm_mcp.scope import write_refusal

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime
    from crm_mcp.sync.commands import Command

log = logging.getLogger("crm_mcp.tools")

P = ParamSpec("P")
R = TypeVar("R")
# set by queue_write when the connection's last preflight failed; crm_tool puts it in the result
_write_warning: ContextVar[str | None] = ContextVar("crm_mcp_write_warning", default=None)


def describe_error(exc: CRMError) -> str:
    """A message for the model: the failure, whether retrying helps, and the next step."""
    kind = type(exc).__name__
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        retry = f"Retrying helps after {exc.retry_after:.0f}s."
    elif isinstance(exc, CircuitOpenError):
        retry = "Retrying helps once the CRM recovers; the breaker probes it automatically."
    elif exc.retryable:
        retry = "Retrying later helps."
    else:
        retry = "Retrying unchanged will not help."
    parts = [f"{kind}: {exc}", retry]
    if exc.hint:
        parts.append(f"Next: {exc.hint}")
    return redact(" ".join(parts))


async def queue_write(
    rt: Runtime,
    command: Command,
    *,
    key: str,
    connection: str,
    local: Callable[[Any, bool], Awaitable[None]] | None = None,
    fresh: bool = False,
) -> tuple[Any, bool]:
    """Queue `command` and write the local record in one transaction; returns (operation, created).

    `local(session, created)` runs inside that transaction, after the outbox row: a tool writes
    its local record there when `created`, or reads the saved one back when the key replays.
    `fresh`: see `crm_mcp.sync.commands.queue` (the first delivery skips its reads before creates).

    Raises:
        IdempotencyError: the key was used before for a different request.
    """
    from crm_mcp.sync.commands import queue

    db = await rt.database()
    now = rt.clock()
    deadline = timedelta(seconds=rt.settings.sync_deadline_seconds)
    async with db.begin_write() as session:
        op, created = await queue(
            session, command, key=key, connection=connection, now=now, deadline=deadline, fresh=fresh
        )
        if local is not None:
            await local(session, created)
    rt.touch()
    if (warning := await write_warning(rt, connection)) is not None:
        _write_warning.set(warning)
    return op, created


def _with_warning(result: R) -> R:
    """A write queued to a connection whose last preflight failed says so in its `warning`."""
    warning = _write_warning.get()
    if warning and "warning" in getattr(type(result), "model_fields", {}):
        result.warning = warning  # type: ignore[attr-defined]
    return result


def crm_tool(
    server: MCPServer[Any],
    *,
    title: str,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
    name: str | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Register an async tool with truthful annotations and the shared error mapping."""

    annotations = ToolAnnotations(  # no title here: the tool's own `title` says it once
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=open_world,
    )

    def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not read_only and (refusal := write_refusal(name or fn.__name__)) is not None:
                raise ToolError(refusal)  # a crm:read token: checked before the tool runs
            token = _write_warning.set(None)
            try:
                with tool_call(name or fn.__name__):  # correlation id + span (docs/observability.md)
                    return _with_warning(await fn(*args, **kwargs))
            except ToolError:
                raise
            except CRMError as exc:
                log.info("tool %s failed: %s", fn.__name__, redact(str(exc)))
                raise ToolError(describe_error(exc)) from None
            except Exception as exc:
                log.exception("tool %s crashed", fn.__name__)
                raise ToolError(
                    f"Internal error in {fn.__name__} ({type(exc).__name__}). Nothing was changed "
                    "unless a sync_operation_id was returned earlier. Check the server log (stderr)."
                ) from None
            finally:
                _write_warning.reset(token)

        description = inspect.cleandoc(fn.__doc__ or "")
        server.add_tool(
            wrapper, name=name or fn.__name__, title=title, description=description, annotations=annotations
        )
        return wrapper

    return decorator

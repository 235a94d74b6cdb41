"""Put dead operations back in the outbox: the one code path behind every retry button.

The `retry_failed_sync` tool and the dashboard's Retry button both call `retry_failed`, so a retry
from an agent and one from an operator select the same operations, reset them the same way, wake
the same readers (`touch`) and say the same sentence about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from crm_mcp.scope import connection_filter
from crm_mcp.settings import Settings

if TYPE_CHECKING:
    from crm_mcp.state.db import Database
    from crm_mcp.state.models import SyncOperation


class RetryHost(Protocol):
    """What a retry needs from the process runtime (`crm_mcp.runtime.Runtime` is one)."""

    settings: Settings
    clock: Callable[[], datetime]

    async def database(self) -> Database: ...

    def connection(self, name: str | None = None, needs: str | None = None) -> Any: ...

    def touch(self) -> None: ...


@dataclass(frozen=True)
class RetryOutcome:
    ops: list[SyncOperation]
    dry_run: bool
    message: str


async def retry_failed(
    rt: RetryHost,
    *,
    operation_id: str | None = None,
    connection: str | None = None,
    all_: bool = False,
    dry_run: bool = False,
) -> RetryOutcome:
    """Requeue dead operations (attempts reset, fresh deadline) by id, by connection, or all.

    Idempotent: an id that is pending, in flight or delivered is left alone and reported as such.

    Raises:
        ValueError: none of operation_id, connection or all_ says what to retry.
        ConfigurationError: `connection` names no configured connection.
    """
    # lazy: the outbox pulls in SQLAlchemy, which the server keeps off its start-up path
    from crm_mcp.state.outbox import retry_dead

    if not (operation_id or connection or all_):
        raise ValueError("Say what to retry: operation_id, connection, or all=true.")
    if connection:
        rt.connection(connection)
    ops = await retry_dead(
        await rt.database(),
        ids=[operation_id] if operation_id else None,
        connection=connection,
        all_=all_,
        now=rt.clock(),
        dry_run=dry_run,
        deadline=timedelta(seconds=rt.settings.sync_deadline_seconds),
        connections=connection_filter(),  # a tenant retries only its own operations
    )
    if not dry_run and ops:
        rt.touch()
    return RetryOutcome(ops=ops, dry_run=dry_run, message=_message(operation_id, ops, dry_run))


def _message(operation_id: str | None, ops: list[Any], dry_run: bool) -> str:
    if operation_id and not ops:
        return (
            f"{operation_id} is not a dead operation (already pending, delivered or unknown); nothing to do."
        )
    if dry_run:
        return f"{len(ops)} dead operation(s) would be retried."
    return f"{len(ops)} operation(s) requeued; the worker delivers them now."

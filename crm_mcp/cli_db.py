"""`crm-mcp db migrate-to URL`: copy the whole state into another database (crm_mcp.state.migrate)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from crm_mcp.errors import CRMError


def add_migrate_parser(dbsub: Any) -> None:
    """The `migrate-to` action under `crm-mcp db`."""
    m = dbsub.add_parser(
        "migrate-to",
        help="copy the whole state (connections, records, outbox, dead letters, keys) to another database",
        description="Copy every table of the current database (CRM_MCP_DATABASE_URL, default the SQLite "
        "file in the state directory) into URL, e.g. postgresql+asyncpg://user@host/db. The target is "
        "migrated to the newest schema first, must be empty (or --force), and its row counts are "
        "verified afterwards. Stop servers and workers first; keep the same CRM_MCP_SECRET_KEY. "
        "Then point CRM_MCP_DATABASE_URL at URL.",
    )
    m.add_argument("url", help="SQLAlchemy async URL of the target database")
    m.add_argument("--force", action="store_true", help="delete what the target already holds first")
    m.add_argument("--batch", type=int, default=1000, help="rows per transaction (default 1000)")


def migrate_to(args: argparse.Namespace, settings: Any) -> int:
    return asyncio.run(_migrate_to(args, settings))


async def _migrate_to(args: argparse.Namespace, settings: Any) -> int:
    from crm_mcp.state.db import Database
    from crm_mcp.state.migrate import describe, migrate

    source = Database(settings.resolved_database_url())
    target = Database(args.url)
    progress, finish = _progress()
    try:
        report = await migrate(source, target, force=args.force, batch=max(1, args.batch), progress=progress)
    except CRMError as exc:
        finish()
        hint = getattr(exc, "hint", None)
        print(f"error: {exc}" + (f"\n{hint}" if hint else ""), file=sys.stderr)
        return 1
    finally:
        await source.dispose()
        await target.dispose()
    finish()
    print(
        f"copied {report.total} rows to {target.url.render_as_string(hide_password=True)}, counts verified:"
    )
    for line in describe(report):
        print(f"  {line}")
    print("Now set CRM_MCP_DATABASE_URL to the new URL (with the same CRM_MCP_SECRET_KEY).")
    return 0


def _progress() -> tuple[Any, Any]:
    """A rich progress bar on a terminal (stderr), otherwise one line per table."""
    if not sys.stderr.isatty():

        def line(table: str, done: int, total: int) -> None:
            if done == total:
                print(f"{table}: {total} rows", file=sys.stderr)

        return line, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(), console=Console(stderr=True)
    )
    bar.start()
    tasks: dict[str, Any] = {}

    def update(table: str, done: int, total: int) -> None:
        if not total:  # an empty table: nothing to show
            return
        if table not in tasks:
            tasks[table] = bar.add_task(table, total=total)
        bar.update(tasks[table], completed=done)

    return update, bar.stop

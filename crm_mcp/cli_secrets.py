"""`crm-mcp secrets rotate`: re-encrypt every stored CRM credential under a new key, no downtime.

Two ways to hold the key, two ways to rotate (SECURITY.md, "Secrets at rest"):

- the generated key in the state directory (no CRM_MCP_SECRET_KEY): `rotate` writes a new
  `secret.key`, keeps the old one in `secret.key.previous` (running servers pick both up on
  their own), re-encrypts, then forgets the old key;
- an operator key (CRM_MCP_SECRET_KEY): set the new key there and the old one in
  CRM_MCP_SECRET_KEY_PREVIOUS, restart the servers, run `rotate`, then drop the old key.

Rows are re-encrypted in batches, each its own transaction: an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from crm_mcp.settings import Settings


def add_secrets_parser(sub: Any) -> None:
    s = sub.add_parser("secrets", help="stored CRM credentials: rotate the key they are encrypted with")
    ssub = s.add_subparsers(dest="secrets_command", metavar="ACTION", required=True)
    r = ssub.add_parser(
        "rotate",
        help="re-encrypt every stored credential under a new key (resumable, no downtime)",
        description="Re-encrypt every stored credential under the current key. Without "
        "CRM_MCP_SECRET_KEY, first generates a new state-dir key (the old one still decrypts until "
        "the rotation is done). With CRM_MCP_SECRET_KEY, set the new key there and the old one in "
        "CRM_MCP_SECRET_KEY_PREVIOUS first. An interrupted run resumes where it stopped.",
    )
    r.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")


def secrets(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(rotate(args, settings))


async def rotate(args: argparse.Namespace, settings: Settings) -> int:
    from crm_mcp.errors import ConfigurationError
    from crm_mcp.state.credentials import (
        Keyring,
        forget_previous_keys,
        new_generated_key,
        rotate_credentials,
    )
    from crm_mcp.state.db import Database

    if args.batch_size < 1:
        raise ConfigurationError("--batch-size must be at least 1")
    operator_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    previous = settings.previous_secret_keys()
    db = Database(settings.resolved_database_url())
    try:
        await db.upgrade()
        keys = Keyring.from_settings(operator_key, settings.state_dir, previous)
        pending = await _pending(db, keys.previous_ids)
        if not pending:
            if operator_key:
                say(
                    f"every stored credential is already under key {keys.key_id}. To rotate: put the "
                    "current key in CRM_MCP_SECRET_KEY_PREVIOUS and a new one in CRM_MCP_SECRET_KEY, "
                    "restart the servers, then run this again."
                )
                return 0
            new_generated_key(settings.state_dir)  # the old key joins secret.key.previous first
            keys.refresh(force=True)
            say(f"new key {keys.key_id} in {settings.state_dir}; the previous key decrypts until done")
        else:
            say(f"resuming: {pending} credential(s) are under an earlier key; target key {keys.key_id}")
        with progress_bar() as advance:
            report = await rotate_credentials(db, keys, batch_size=args.batch_size, progress=advance)
        forgotten = [] if operator_key else forget_previous_keys(settings.state_dir, report.remaining_key_ids)
    finally:
        await db.dispose()
    print(
        f"rotated {report.rotated} credential(s) to key {report.key_id}; {report.already} already under it; "
        f"{report.total} stored"
    )
    if report.unreadable:
        names = ", ".join(report.unreadable[:10]) + (" ..." if len(report.unreadable) > 10 else "")
        print(
            f"error: {len(report.unreadable)} credential(s) no known key decrypts ({names}): add their key "
            "to CRM_MCP_SECRET_KEY_PREVIOUS and run again, or reconnect those connections",
            file=sys.stderr,
        )
        return 1
    if forgotten:
        say(f"forgot previous key(s) {', '.join(forgotten)}: nothing is encrypted under them any more")
    elif operator_key and previous:
        say("done: CRM_MCP_SECRET_KEY_PREVIOUS can now be removed (restart the servers without it)")
    return 0


async def _pending(db: Any, previous_ids: list[str]) -> int:
    """Rows a previous rotation left under a key this keyring still has (rows under a key
    nobody has any more are reported by the rotation, and never block a new one)."""
    from sqlalchemy import func, or_, select

    from crm_mcp.state.models import Connection

    async with db.sessions() as session:
        query = select(func.count()).where(
            Connection.credentials_encrypted.is_not(None),
            or_(Connection.key_id.is_(None), Connection.key_id.in_(previous_ids)),
        )
        return int(await session.scalar(query) or 0)


def say(text: str) -> None:
    print(text, file=sys.stderr)


@contextmanager
def progress_bar() -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on a terminal; otherwise a line at every tenth of the way."""
    if not sys.stderr.isatty():
        shown = [-1]

        def line(done: int, total: int) -> None:
            tenth = done * 10 // total if total else 10
            if tenth != shown[0]:
                shown[0] = tenth
                say(f"re-encrypted {done}/{total}")

        yield line
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("re-encrypting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("rotate", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update

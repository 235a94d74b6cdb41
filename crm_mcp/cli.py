"""The `crm-mcp` command.

Imports are lazy on purpose: `crm-mcp serve` must reach the MCP handshake fast, and stdout belongs
to JSON-RPC in stdio mode, so every log line goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crm_mcp.settings import Settings

EPILOG = """\
examples:
  crm-mcp serve                         stdio, for Claude Desktop and other MCP clients
  crm-mcp serve --sandbox               same, wired to the built-in CRM simulators
  crm-mcp serve --transport http --port 8000   streamable HTTP at http://127.0.0.1:8000/mcp
  crm-mcp demo                          the end-to-end tour (sandbox + SQLite), no credentials
  crm-mcp status                        sync status and health verdict
  crm-mcp dlq list | show ID | retry ID|--all [--dry-run]

configuration: environment variables CRM_MCP_* (or a .env file), optional crm-mcp.toml.
  CRM_MCP_DATABASE_URL   default: SQLite in ~/.local/state/crm-mcp/
{providers}
See README.md for the full table.
"""


def _epilog() -> str:
    """The help epilog, with each registered provider's env vars (a third party's included)."""
    from crm_mcp.connectors.registry import providers

    lines = [
        f"  CRM_MCP_{p.env_prefix}_{{{','.join(f.upper() for f in p.settings.model_fields)}}}  "
        f"{p.title} connection"
        for p in providers()
    ]
    return EPILOG.format(providers="\n".join(lines))


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from crm_mcp.errors import redact

        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx2", "httpcore", "uvicorn.access", "aiosqlite", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crm-mcp",
        description="MCP server for CRM integrations with a durable local sync engine.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("serve", help="run the MCP server (stdio by default) with the outbox worker")
    s.add_argument(
        "--transport",
        choices=["stdio", "sse", "http"],
        default="stdio",
        help="stdio (default), sse, or http (streamable HTTP at /mcp)",
    )
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address for sse/http (default 127.0.0.1); beyond loopback CRM_MCP_HTTP_TOKEN is "
        "required, and CRM_MCP_ALLOWED_HOSTS names the Host clients use",
    )
    s.add_argument("--port", type=int, default=8000, help="port for sse/http (default 8000)")
    s.add_argument(
        "--sandbox",
        action="store_true",
        help="wire every connector to in-process simulators (no credentials; throwaway database)",
    )
    s.add_argument("--no-worker", action="store_true", help="do not run the outbox worker in this process")

    w = sub.add_parser("worker", help="run the outbox + retry worker alone (scale-out next to servers)")
    w.add_argument(
        "--webhooks-port",
        type=int,
        default=None,
        help="also receive webhooks at /webhooks/{provider}/{connection} on this port (stdio setups)",
    )
    w.add_argument("--webhooks-host", default="127.0.0.1", help="bind address for --webhooks-port")

    sb = sub.add_parser("sandbox", help="start the provider simulators on loopback and print their URLs")
    sb.add_argument(
        "--port",
        type=int,
        default=0,
        help="port of the first simulator; the others take the next ports (default: any free)",
    )
    sb.add_argument("--burst", type=int, help="requests per burst window (default: each CRM's own)")
    sb.add_argument("--interval-ms", type=int, help="burst window in ms (default: each CRM's own)")

    sub.add_parser("demo", help="end-to-end tour through a real MCP client (sandbox + SQLite)")

    st = sub.add_parser("status", help="print sync status and the health verdict")
    st.add_argument("--json", action="store_true", help="machine-readable output")

    d = sub.add_parser("dlq", help="dead-letter queue: list, show, retry")
    dsub = d.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    dl = dsub.add_parser("list", help="list dead operations")
    dl.add_argument("--connection")
    dl.add_argument("--limit", type=int, default=20)
    dl.add_argument("--json", action="store_true")
    ds = dsub.add_parser("show", help="show one entry with its error history")
    ds.add_argument("entry_id")
    dr = dsub.add_parser("retry", help="put dead operations back in the outbox")
    dr.add_argument("entry_id", nargs="?", help="dead-letter entry id or operation id")
    dr.add_argument("--connection")
    dr.add_argument("--all", action="store_true")
    dr.add_argument("--dry-run", action="store_true")

    c = sub.add_parser("config", help="configuration helpers")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cg = csub.add_parser("generate", help="print a .env or crm-mcp.toml snippet for a connection")
    cg.add_argument("--provider", help="provider name (default: the only one that takes the options given)")
    cg.add_argument("--format", choices=["env", "toml"], default="env")
    cg.add_argument("--name", help="connection name (toml only; default: the provider's name)")
    cg.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="a connection option, e.g. location_id=..."
    )
    cg.add_argument("--location-id", help="shorthand for --set location_id=...")
    cg.add_argument("--calendar-id", help="shorthand for --set calendar_id=...")
    cg.add_argument("--portal-id", help="shorthand for --set portal_id=...")

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    dbsub.add_parser("upgrade", help="create or migrate the database to the latest schema")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from crm_mcp import __version__

        print(__version__)
        return
    if not args.command:
        parser.print_help()
        return
    from crm_mcp.errors import CRMError
    from crm_mcp.settings import load_settings

    try:
        settings = load_settings()
        setup_logging(settings.log_level)
        code = _dispatch(args, settings)
    except CRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    cmd = args.command
    if cmd == "serve":
        from crm_mcp.server.run import serve

        asyncio.run(
            serve(
                settings,
                transport=args.transport,
                host=args.host,
                port=args.port,
                sandbox=args.sandbox,
                worker=not args.no_worker,
            )
        )
        return 0
    if cmd == "worker":
        from crm_mcp.server.run import run_worker

        asyncio.run(run_worker(settings, webhooks_port=args.webhooks_port, webhooks_host=args.webhooks_host))
        return 0
    if cmd == "sandbox":
        from crm_mcp.cli_commands import run_sandbox

        return run_sandbox(port=args.port, burst=args.burst, interval_ms=args.interval_ms)
    if cmd == "demo":
        from crm_mcp.demo import run_demo

        return asyncio.run(run_demo())
    from crm_mcp import cli_commands

    handlers: dict[str, Any] = {
        "status": cli_commands.status,
        "dlq": cli_commands.dlq,
        "config": cli_commands.config,
        "db": cli_commands.db,
    }
    return int(asyncio.run(handlers[cmd](args, settings)) or 0)

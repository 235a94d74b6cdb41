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
  crm-mcp status [--watch]              the server's sync status, breakers and checks
  crm-mcp connections list | test [NAME]   connections, and their preflight run now
  crm-mcp dlq list [--wide] | show ID | retry ID|--all [--dry-run]   (any unique id prefix)
  crm-mcp sandbox --fail 503 --rate 0.3   simulators that fail 30% of API calls with 503
  crm-mcp config show                   which config files were read, effective settings
  crm-mcp claude-config [--sandbox]     a Claude Desktop entry with absolute paths

configuration: environment variables CRM_MCP_* > .env (working dir, then ~/.config/crm-mcp/)
  > crm-mcp.toml (first of $CRM_MCP_CONFIG, working dir, ~/.config/crm-mcp/) > defaults.
  CRM_MCP_DATABASE_URL   default: SQLite in ~/.local/state/crm-mcp/
{providers}
See README.md for the full table.
"""


SERVE_AUTH_EPILOG = """\
who may call /mcp (sse/http; docs/oauth.md). Beyond loopback one of these is required:
  CRM_MCP_HTTP_TOKEN      one static bearer token (32+ characters; principal "default")
  CRM_MCP_HTTP_TOKENS     several at once, for rotation: name=token,name=token (or JSON with scopes)
  CRM_MCP_OAUTH_ISSUER    accept JWT access tokens from this authorization server (Keycloak, Auth0,
                          Entra ID...), checked against its JWKS; served as RFC 9728 metadata
  CRM_MCP_OAUTH_AUDIENCE  the `aud` tokens must carry (default: CRM_MCP_PUBLIC_URL + /mcp)
  CRM_MCP_PUBLIC_URL      this server's public https URL (required with OAuth beyond loopback)
  CRM_MCP_OAUTH_JWKS_URL, CRM_MCP_OAUTH_ALGORITHMS (RS256,ES256), CRM_MCP_OAUTH_LEEWAY_SECONDS (30)
  CRM_MCP_ALLOWED_HOSTS   Host names answered besides loopback and the public URL's
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


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Logs to stderr as JSON or text (`CRM_MCP_LOG_FORMAT`, docs/observability.md), redacted."""
    from crm_mcp.observability.logging import build_handler

    handler = build_handler(fmt, sys.stderr)
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx2", "httpcore", "uvicorn.access", "aiosqlite", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _setup_tracing(endpoint: str | None) -> None:
    if endpoint:  # lazy: the OpenTelemetry SDK loads only when traces are exported
        from crm_mcp.observability.tracing import configure

        configure(endpoint)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crm-mcp",
        description="MCP server for CRM integrations with a durable local sync engine.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "serve",
        help="run the MCP server (stdio by default) with the outbox worker",
        epilog=SERVE_AUTH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    s.add_argument(
        "--fail",
        metavar="STATUS|KIND",
        help="with --sandbox: the simulators fail API calls with this status (503, 429...) or kind "
        "(timeout, reset, slow, malformed); see docs/sandbox.md",
    )
    s.add_argument("--rate", type=float, default=1.0, help="with --fail: share of API calls that fail (0..1)")
    s.add_argument(
        "--read-only", action="store_true", help="register only read tools (or CRM_MCP_READ_ONLY=true)"
    )
    s.add_argument(
        "--toolsets",
        metavar="NAMES",
        help="only these toolsets' tools, comma-separated: contacts, leads, appointments, sync, "
        "diagnostics (or CRM_MCP_TOOLSETS)",
    )

    w = sub.add_parser("worker", help="run the outbox + retry worker alone (scale-out next to servers)")
    w.add_argument(
        "--webhooks-port",
        type=int,
        default=None,
        help="also receive webhooks at /webhooks/{provider}/{connection} on this port (stdio setups)",
    )
    w.add_argument("--webhooks-host", default="127.0.0.1", help="bind address for --webhooks-port")
    w.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="serve /dashboard, /metrics, /healthz, /readyz and /webhooks on this port (one server; "
        "the same token rules as `serve --transport http`)",
    )
    w.add_argument(
        "--http-host",
        default="127.0.0.1",
        help="bind address for --http-port (default 127.0.0.1); beyond loopback CRM_MCP_HTTP_TOKEN is "
        "required",
    )

    sb = sub.add_parser("sandbox", help="start the provider simulators on loopback and print their URLs")
    sb.add_argument(
        "--port",
        type=int,
        default=0,
        help="port of the first simulator; the others take the next ports (default: any free)",
    )
    sb.add_argument("--burst", type=int, help="requests per burst window (default: each CRM's own)")
    sb.add_argument("--interval-ms", type=int, help="burst window in ms (default: each CRM's own)")
    sb.add_argument(
        "--fail",
        metavar="STATUS|KIND",
        help="inject a fault into API calls: an HTTP status (503, 500, 429...) or one of "
        "timeout, reset, slow, malformed; change it later with POST URL/_sandbox/faults (docs/sandbox.md)",
    )
    sb.add_argument(
        "--rate", type=float, default=1.0, help="share of API calls that fail with --fail, 0..1 (default 1)"
    )
    sb.add_argument("--fail-path", metavar="REGEX", help="fault only paths matching this regex")

    sub.add_parser("demo", help="end-to-end tour through a real MCP client (sandbox + SQLite)")

    st = sub.add_parser(
        "status", help="the running server's sync status, breakers, quota and connection checks"
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument("--watch", action="store_true", help="redraw every 2 s until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0, help="seconds between redraws with --watch")
    cn = sub.add_parser("connections", help="list connections, or check them now (token, tenant, calendar)")
    cnsub = cn.add_subparsers(dest="connections_command", metavar="ACTION", required=True)
    cl = cnsub.add_parser("list", help="name, provider, capabilities and last check of each connection")
    cl.add_argument("--json", action="store_true", help="machine-readable output")
    ct = cnsub.add_parser("test", help="check connections now, one line per check; exit code 1 on a failure")
    ct.add_argument("names", nargs="*", metavar="NAME", help="only these connections (default: all)")
    ct.add_argument("--json", action="store_true", help="machine-readable output")

    d = sub.add_parser("dlq", help="dead-letter queue: list, show, retry")
    dsub = d.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    dl = dsub.add_parser("list", help="list dead operations, newest first (reasons wrapped, not cut)")
    dl.add_argument("--connection", help="only this connection's")
    dl.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    dl.add_argument(
        "--wide", action="store_true", help="full entry and operation ids (default: 8-char prefixes)"
    )
    dl.add_argument("--json", action="store_true", help="machine-readable, full ids")
    ds = dsub.add_parser("show", help="show one entry with its error history")
    ds.add_argument("entry_id", help="entry id or operation id, or any unique prefix of one")
    dr = dsub.add_parser("retry", help="put dead operations back in the outbox")
    dr.add_argument("entry_id", nargs="?", help="entry id or operation id, or any unique prefix of one")
    dr.add_argument("--connection", help="every dead operation of this connection")
    dr.add_argument("--all", action="store_true", help="every dead operation")
    dr.add_argument("--dry-run", action="store_true", help="list what would be requeued, change nothing")

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
    cs = csub.add_parser(
        "show", help="which config files were read (and looked for), effective settings, connections"
    )
    cs.add_argument("--json", action="store_true", help="machine-readable output")

    cc = sub.add_parser(
        "claude-config", help="print a Claude Desktop mcpServers entry with absolute paths (no secrets)"
    )
    cc.add_argument(
        "--sandbox", action="store_true", help="the entry runs `serve --sandbox` (no account needed)"
    )
    cc.add_argument("--name", default="crm", help="the server's key in mcpServers (default: crm)")

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    dbsub.add_parser("upgrade", help="create or migrate the database to the latest schema")
    from crm_mcp.cli_db import add_migrate_parser

    add_migrate_parser(dbsub)
    from crm_mcp.cli_calls import add_calls_parser

    add_calls_parser(sub)
    from crm_mcp.cli_secrets import add_secrets_parser

    add_secrets_parser(sub)
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
    from crm_mcp.errors import ConfigurationError, CRMError
    from crm_mcp.settings import load_settings

    try:
        settings = load_settings()
        setup_logging(settings.log_level, settings.log_format)
        _setup_tracing(settings.otel_endpoint)
        code = _dispatch(args, settings)
    except CRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint and not isinstance(exc, ConfigurationError):  # its message says what to fix
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        message = _database_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)


def _database_error(exc: BaseException) -> str | None:
    """One line for a database that cannot be reached or refuses us, else None (a real bug)."""
    import os

    from crm_mcp.settings import load_settings

    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    import traceback

    db_modules = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "crm_mcp/state/")
    in_database = any(
        any(m in frame.filename.replace("\\", "/") for m in db_modules)
        for e in chain
        for frame in traceback.extract_tb(e.__traceback__)
    ) or any(type(e).__module__.split(".")[0] in ("sqlalchemy", "asyncpg", "sqlite3") for e in chain)
    if not in_database:
        return None
    names = {type(e).__name__ for e in chain}
    unreachable = any(isinstance(e, OSError) and not isinstance(e, FileNotFoundError) for e in chain)
    refused = names & {
        "InvalidPasswordError",
        "InvalidCatalogNameError",
        "InvalidAuthorizationSpecificationError",
    }
    if not (unreachable or refused or "OperationalError" in names):
        return None
    try:
        from crm_mcp.settings import redact_url

        url = redact_url(load_settings().resolved_database_url()) or "?"
    except Exception:
        url = os.environ.get("CRM_MCP_DATABASE_URL", "the database")
    detail = next((str(e) for e in reversed(chain) if str(e)), type(exc).__name__).splitlines()[0]
    from crm_mcp.errors import redact

    return redact(
        f"cannot use the database {url}: {detail}. Start it, or fix CRM_MCP_DATABASE_URL "
        "(`crm-mcp config show` prints the one in use)."
    )


def _sandbox_fault(args: argparse.Namespace) -> dict[str, Any] | None:
    """`serve --sandbox --fail X --rate P` as a fault rule (one-line error if malformed)."""
    if args.fail is None:
        return None
    from crm_mcp.errors import ConfigurationError
    from crm_mcp.sandbox.faults import fault_from_flag

    if not args.sandbox:
        raise ConfigurationError("--fail needs --sandbox (it makes the simulators fail, not a real CRM).")
    try:
        return fault_from_flag(args.fail, rate=args.rate)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    cmd = args.command
    if cmd == "serve":
        from crm_mcp.server.run import serve
        from crm_mcp.server.toolsets import check_toolsets

        if args.read_only or args.toolsets is not None:  # the flags win over CRM_MCP_READ_ONLY/_TOOLSETS
            toolsets = settings.toolsets if args.toolsets is None else args.toolsets.split(",")
            read_only = settings.read_only or args.read_only
            settings = settings.model_copy(update={"read_only": read_only, "toolsets": toolsets})
        check_toolsets(settings.toolsets)  # a wrong name is a one-line error before anything starts
        asyncio.run(
            serve(
                settings,
                transport=args.transport,
                host=args.host,
                port=args.port,
                sandbox=args.sandbox,
                worker=not args.no_worker,
                sandbox_fault=_sandbox_fault(args),
            )
        )
        return 0
    if cmd == "worker":
        from crm_mcp.server.run import run_worker

        asyncio.run(
            run_worker(
                settings,
                webhooks_port=args.webhooks_port,
                webhooks_host=args.webhooks_host,
                http_port=args.http_port,
                http_host=args.http_host,
            )
        )
        return 0
    if cmd == "sandbox":
        from crm_mcp.cli_commands import run_sandbox

        return run_sandbox(
            port=args.port,
            burst=args.burst,
            interval_ms=args.interval_ms,
            fail=args.fail,
            rate=args.rate,
            fail_path=args.fail_path,
        )
    if cmd == "claude-config":
        from crm_mcp.cli_config import claude_config

        return claude_config(args, settings)
    if cmd == "config" and args.config_command == "show":
        from crm_mcp.cli_config import config_show

        return config_show(args, settings)
    if cmd == "demo":
        from crm_mcp.demo import run_demo

        return asyncio.run(run_demo())
    if cmd == "db" and args.db_command == "migrate-to":
        from crm_mcp.cli_db import migrate_to

        return migrate_to(args, settings)
    if cmd == "secrets":
        from crm_mcp.cli_secrets import secrets

        return secrets(args, settings)
    from crm_mcp import cli_calls, cli_commands, cli_connections, cli_status

    handlers: dict[str, Any] = {
        "status": cli_status.status,
        "connections": cli_connections.connections,
        "dlq": cli_commands.dlq,
        "config": cli_commands.config,
        "db": cli_commands.db,
        "calls": cli_calls.calls,
    }
    return int(asyncio.run(handlers[cmd](args, settings)) or 0)

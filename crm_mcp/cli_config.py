"""`crm-mcp config show` and `crm-mcp claude-config`: where configuration comes from, and how a
client that starts crm-mcp from another directory (Claude Desktop) finds the same."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from crm_mcp.settings import ConnectionSettings, Settings, redact_url

REDACTED = "***"
_SECRET_WORDS = ("token", "secret", "key", "password", "jwt")


def _is_secret(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def _shown(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, SecretStr) or (_is_secret(name) and isinstance(value, str) and value):
        return REDACTED
    if name.endswith("_url") and isinstance(value, str):
        return redact_url(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")  # SecretStr fields come out masked
    if isinstance(value, list):
        return [_shown(name, v) for v in value]
    return value


def effective_settings(settings: Settings) -> list[dict[str, Any]]:
    """Every core setting: its value (secrets redacted) and where it came from."""
    rows = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name == "database_url" and value is None:
            value = settings.resolved_database_url()
        rows.append({"name": name, "value": _shown(name, value), "origin": settings.setting_origin(name)})
    return rows


def _connection_row(settings: Settings, conn: ConnectionSettings) -> dict[str, Any]:
    toml = settings.toml_path
    from_env = conn.name == conn.provider and conn.name not in _toml_connection_names(settings)
    return {
        "name": conn.name,
        "provider": conn.provider,
        "from": "environment / .env" if from_env else str(toml),
        "options": {k: _shown(k, v) for k, v in conn.options.items() if v not in (None, "", [], {})},
    }


def _toml_connection_names(settings: Settings) -> set[str]:
    return set((settings._toml().get("connections") or {}).keys())


def config_report(settings: Settings) -> dict[str, Any]:
    return {
        "files": [
            {"path": str(s.path), "kind": s.kind, "origin": s.origin, "status": s.status}
            for s in settings.config_sources
        ],
        "environment": sorted(k for k in os.environ if k.upper().startswith("CRM_MCP_")),
        "settings": effective_settings(settings),
        "connections": [_connection_row(settings, c) for c in settings.connections()],
    }


def config_show(args: argparse.Namespace, settings: Settings) -> int:
    report = config_report(settings)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print("[bold]Configuration files[/] (highest precedence first; environment variables beat all)")
    colour = {"read": "green", "absent": "dim", "skipped": "yellow"}
    for f in report["files"]:
        note = " (another crm-mcp.toml is used)" if f["status"] == "skipped" else ""
        console.print(
            f"  [{colour[f['status']]}]{f['status']:<7}[/] {escape(f['path'])}  [dim]{f['origin']}[/]{note}"
        )
    if report["environment"]:
        console.print("[bold]Environment:[/] " + ", ".join(report["environment"]))
    table = Table("setting", "value", "from", title="Effective settings", title_justify="left")
    table.columns[0].no_wrap = True
    table.columns[1].overflow = table.columns[2].overflow = "fold"
    for row in report["settings"]:
        value = row["value"]
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        table.add_row(row["name"], escape(text), escape(row["origin"]), style=None)
    console.print(table)
    if not report["connections"]:
        console.print(
            "[bold]Connections:[/] none. Add one with `crm-mcp config generate` (env vars or a "
            "[connections.<name>] table in crm-mcp.toml)."
        )
        return 0
    conns = Table("connection", "provider", "from", "options", title="Connections", title_justify="left")
    conns.columns[-1].overflow = "fold"
    for c in report["connections"]:
        opts = ", ".join(f"{k}={v}" for k, v in c["options"].items())
        conns.add_row(c["name"], c["provider"], escape(c["from"]), escape(opts))
    console.print(conns)
    return 0


def crm_mcp_command() -> list[str]:
    """An absolute command that starts this installation's crm-mcp, whatever the PATH."""
    bindir = Path(sys.executable).parent
    for name in ("crm-mcp", "crm-mcp.exe"):
        script = bindir / name
        if script.is_file():
            return [str(script.absolute())]
    found = shutil.which("crm-mcp")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "crm_mcp"]


def claude_config(args: argparse.Namespace, settings: Settings) -> int:
    """Print a Claude Desktop `mcpServers` entry with absolute paths (no secrets in it)."""
    command = crm_mcp_command()
    serve = ["serve", "--sandbox"] if args.sandbox else ["serve"]
    env: dict[str, str] = {"CRM_MCP_STATE_DIR": str(settings.state_dir.expanduser().absolute())}
    toml = settings.toml_path
    if toml is not None:
        env["CRM_MCP_CONFIG"] = str(toml.absolute())
    entry = {"command": command[0], "args": [*command[1:], *serve], "env": env}
    print(json.dumps({"mcpServers": {args.name: entry}}, indent=2))
    cwd_env = [s for s in settings.config_sources if s.kind == "env" and s.status == "read"]
    for source in cwd_env:
        if source.origin == "working directory":
            print(
                f"note: Claude Desktop does not start crm-mcp in {source.path.parent}, so {source.path} "
                f"will not be read there: move it to {_user_env()} "
                'or put its variables in the entry\'s "env".',
                file=sys.stderr,
            )
    shell = sorted(
        k for k in os.environ if k.upper().startswith("CRM_MCP_") and k.upper() not in ("CRM_MCP_CONFIG",)
    )
    if shell:
        print(
            f"note: this shell sets {', '.join(shell)}; Claude Desktop will not see them: add them to the "
            f'entry\'s "env" or to {_user_env()}.',
            file=sys.stderr,
        )
    if not args.sandbox and not settings.connections():
        print(
            'note: no connection is configured here; add CRM_MCP_* variables to "env", or use --sandbox.',
            file=sys.stderr,
        )
    print(
        "Paste the entry into claude_desktop_config.json (macOS: ~/Library/Application Support/Claude/, "
        "Windows: %APPDATA%\\Claude\\), then restart Claude Desktop.",
        file=sys.stderr,
    )
    return 0


def _user_env() -> str:
    from crm_mcp.settings import user_config_dir

    return str(user_config_dir() / ".env")

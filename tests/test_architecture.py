"""DESIGN §1 import rules, checked on the source (AST), plus the start-up laziness budget."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "crm_mcp"

# package -> packages it must never import
FORBIDDEN = {
    "connectors": {"state", "sync", "server", "tools", "resources", "cli", "runtime"},
    "state": {"sync", "server", "tools", "resources", "cli", "connectors", "runtime"},
    "sync": {"server", "tools", "resources", "cli", "runtime"},
    "tools": {"server", "cli"},
    "resources": {"server", "cli"},
    "sandbox": {"state", "sync", "server", "tools", "resources", "connectors", "cli", "runtime"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_import_direction() -> None:
    violations = []
    for package, banned in FORBIDDEN.items():
        for path in (PKG / package).rglob("*.py"):
            for mod in imported_modules(path):
                parts = mod.split(".")
                if parts[0] == "crm_mcp" and len(parts) > 1 and parts[1] in banned:
                    violations.append(f"{path.relative_to(PKG.parent)} imports {mod}")
    assert not violations, "\n".join(violations)


def test_only_http_module_constructs_http_clients() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        if path.name == "http.py" and path.parent.name == "connectors":
            continue
        text = path.read_text(encoding="utf-8")
        if "AsyncClient(" in text or "httpx2.Client(" in text:
            offenders.append(str(path.relative_to(PKG.parent)))
    assert not offenders, offenders


def test_nothing_imports_server_or_cli() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] in {"server", "cli.py", "__main__.py", "demo.py", "cli_commands.py"}:
            continue
        for mod in imported_modules(path):
            if mod.startswith(("crm_mcp.server", "crm_mcp.cli")):
                offenders.append(f"{rel} imports {mod}")
    assert not offenders, offenders


def test_serve_startup_keeps_heavy_modules_lazy() -> None:
    """Building the server must not import SQLAlchemy, alembic, aiosqlite or the sandbox."""
    code = (
        "import sys\n"
        "from crm_mcp.settings import load_settings\n"
        "from crm_mcp.runtime import Runtime\n"
        "from crm_mcp.server.app import build_server\n"
        "build_server(Runtime(load_settings(_env_file=None)))\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', "
        "'crm_mcp.providers.gohighlevel.sandbox.simulator', 'aiosqlite')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"

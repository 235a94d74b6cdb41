"""DESIGN §1 import rules, checked on the source (AST), plus the start-up laziness budget.

- the import direction between the top-level packages;
- a provider package imports only the shared layer (`connectors`, `errors`) and itself; its
  `sandbox/` may also use what all simulators share (`crm_mcp.sandbox`);
- nothing outside `providers/<name>/` names a provider in code (docstrings and comments aside);
- no import cycles between modules.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "crm_mcp"

# package -> packages it must never import
FORBIDDEN = {
    "connectors": {"state", "sync", "server", "tools", "resources", "cli", "runtime", "providers"},
    "state": {"sync", "server", "tools", "resources", "cli", "connectors", "runtime", "providers"},
    "sync": {"server", "tools", "resources", "cli", "runtime", "providers"},
    "tools": {"server", "cli", "providers"},
    "resources": {"server", "cli", "providers"},
    "sandbox": {"state", "sync", "server", "tools", "resources", "connectors", "cli", "runtime", "providers"},
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


def test_tool_modules_are_leaves() -> None:
    """Only the server's wiring imports tool modules: resources, routes and the CLI read status
    and schemas from `views`, `state` and `sync`, so a tool can change without breaking them."""
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "tools" or rel.as_posix() == "server/app.py":
            continue
        offenders += [f"{rel} imports {m}" for m in imported_modules(path) if m.startswith("crm_mcp.tools")]
    assert not offenders, offenders


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
        entry_points = {"server", "__main__.py", "demo.py"}
        if rel.parts[0] in entry_points or (len(rel.parts) == 1 and rel.name.startswith("cli")):
            continue  # the server, and the CLI modules (`cli.py`, `cli_*.py`) that start it
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


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def module_imports(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """The crm_mcp modules `module` imports at run time (anywhere in it, lazy imports included;
    imports for type checking only are not imports)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            submodules = {f"{base}.{a.name}" for a in node.names} & known.keys()
            found.update(submodules or {base})
    return {m for m in found if m in known and m != module}


def test_providers_import_only_the_shared_layer_and_themselves() -> None:
    known = _modules()
    violations = []
    for module, path in known.items():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] != "providers":
            continue
        own = ".".join(parts[:3])
        allowed = ("crm_mcp.connectors", "crm_mcp.errors", own)
        if len(parts) > 3 and parts[3] == "sandbox":
            allowed = (*allowed, "crm_mcp.sandbox")
        for imported in module_imports(path, module, known):
            if not imported.startswith(allowed):
                violations.append(f"{module} imports {imported}")
    assert not violations, "\n".join(violations)


def _provider_words() -> re.Pattern[str]:
    from crm_mcp.connectors.registry import providers

    words = set()
    for p in providers():
        words |= {p.name, *p.aliases, p.env_prefix.lower()}
    words -= {
        "make"
    }  # Make's name is an everyday word (make_handler, ...): its package is checked by imports
    return re.compile(r"(?<![a-z0-9])(" + "|".join(sorted(words)) + r")(?![a-z0-9])", re.IGNORECASE)


def _code_texts(tree: ast.AST) -> list[tuple[int, str]]:
    """Identifiers and string literals, docstrings excepted (docs may name providers)."""
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    texts: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name):
            texts.append((line, node.id))
        elif isinstance(node, ast.Attribute):
            texts.append((line, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            texts.append((line, node.name))
        elif isinstance(node, ast.arg):
            texts.append((line, node.arg))
        elif isinstance(node, ast.alias):
            texts.append((line, node.name))
        elif isinstance(node, ast.ImportFrom) and node.module:
            texts.append((line, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            texts.append((line, node.value))
    return texts


# Modules that still name a provider, each to be made neutral; the list may only shrink.
STILL_NAMING_PROVIDERS: set[str] = set()


def test_nothing_outside_a_provider_package_names_a_provider() -> None:
    pattern = _provider_words()
    offenders: dict[str, list[str]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "providers" or rel.parts[:2] == ("state", "migrations"):
            continue
        for line, text in _code_texts(ast.parse(path.read_text(encoding="utf-8"))):
            if pattern.search(text.replace("_", " ").replace(".", " ")):
                offenders.setdefault(rel.as_posix(), []).append(f"{line}: {text[:60]!r}")
    unexpected = {k: v for k, v in offenders.items() if k not in STILL_NAMING_PROVIDERS}
    assert not unexpected, unexpected
    fixed = STILL_NAMING_PROVIDERS - offenders.keys()
    assert not fixed, f"{sorted(fixed)} no longer name a provider: remove them from STILL_NAMING_PROVIDERS"


def test_no_import_cycles() -> None:
    known = _modules()
    graph = {m: module_imports(p, m, known) for m, p in known.items()}
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)

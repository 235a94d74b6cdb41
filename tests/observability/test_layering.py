"""`crm_mcp.observability` is a leaf every layer may use (connectors, state, sync, tools, server):
it imports nothing of crm-mcp but the error tree (for `redact`) and itself."""

from __future__ import annotations

from pathlib import Path

from tests.test_architecture import imported_modules

PACKAGE = Path(__file__).resolve().parents[2] / "crm_mcp" / "observability"


def test_observability_imports_only_errors_and_itself() -> None:
    offenders = [
        f"{path.name} imports {module}"
        for path in PACKAGE.glob("*.py")
        for module in imported_modules(path)
        if module.startswith("crm_mcp.")
        and module != "crm_mcp.errors"
        and not module.startswith("crm_mcp.observability")
    ]
    assert not offenders, offenders

"""Errors that are right: every piece of advice names a tool that exists and a setting that exists,
and the errors the issue found wrong now say what is true.

The advice is collected two ways: from the source (every error hint, every `WITHOUT` sentence,
every ToolError and error message outside the provider wire code, every `*HINT*` constant) and
through an MCP client (tool and argument descriptions, the server's instructions, prompts, and
the errors a few broken set-ups produce).
"""

from __future__ import annotations

import ast
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_mcp import errors
from crm_mcp.connectors.base import WITHOUT
from crm_mcp.connectors.registry import providers
from crm_mcp.server.app import INSTRUCTIONS
from crm_mcp.settings import Settings
from tests.harness import harness
from tests.tools.test_tool_list_budget import sandbox_client, wire

pytestmark = pytest.mark.anyio

PKG = Path(__file__).resolve().parents[2] / "crm_mcp"
# a snake_case word starting with one of these names a tool (or an argument or field, checked too)
TOOL_VERBS = (
    "get|add|analyze|book|cancel|check|create|delete|find|generate|list|log|merge|pull|push|qualify|"
    "retry|search|set|sync|test|update|upsert|validate"
)
TOOL_WORD = re.compile(rf"\b(?:{TOOL_VERBS})_[a-z0-9_]*[a-z0-9]\b")
SETTING = re.compile(r"\bCRM_MCP_[A-Z0-9_]*[A-Z0-9]\b")
# where error messages are advice to the model or the operator (a provider's wire-level messages
# name its own API calls, e.g. "ringcentral list_calls: ..."; their hints are collected anyway)
ADVICE_DIRS = {"tools", "server", "sync", "state", "resources", "connectors"}
ADVICE_FILES = {"runtime.py", "errors.py", "settings.py", "preflight.py", "views.py"}


def _strings(node: ast.AST) -> Iterator[str]:
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            yield n.value


def _source_files() -> Iterator[Path]:
    for path in PKG.rglob("*.py"):
        if "sandbox" not in path.relative_to(PKG).parts:
            yield path


def _is_advice_file(path: Path) -> bool:
    rel = path.relative_to(PKG)
    return rel.parts[0] in ADVICE_DIRS or rel.as_posix() in ADVICE_FILES


def source_advice() -> dict[str, list[str]]:
    """text -> where it is: the hints and error messages a model or an operator reads."""
    found: dict[str, list[str]] = {}

    def add(texts: Iterator[str], where: str) -> None:
        for t in texts:
            found.setdefault(t, []).append(where)

    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(PKG.parent))
        for n in ast.walk(tree):
            if isinstance(n, ast.Call):
                f = n.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                for kw in n.keywords:
                    if kw.arg in ("hint", "reconnect_hint", "description"):
                        add(_strings(kw.value), where)
                if name.endswith("Error") and _is_advice_file(path):
                    add((s for a in n.args for s in _strings(a)), where)
            elif isinstance(n, ast.Assign):
                names = [t.id for t in n.targets if isinstance(t, ast.Name)]
                if any("HINT" in x or x in ("hint", "WITHOUT", "INSTRUCTIONS") for x in names):
                    add(_strings(n.value), where)
    return found


def known_settings() -> set[str]:
    names = {f"CRM_MCP_{field.upper()}" for field in Settings.model_fields}
    for provider in providers():
        prefix = provider.settings.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in provider.settings.model_fields}
    # read straight from the environment (os.environ / getenv, or a *_ENV constant)
    for path in _source_files():
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Call) and (
                "environ" in ast.unparse(n.func) or "getenv" in ast.unparse(n.func)
            ):
                names |= {s for a in n.args for s in _strings(a) if s.startswith("CRM_MCP_")}
            elif isinstance(n, ast.Subscript) and "environ" in ast.unparse(n.value):
                names |= {s for s in _strings(n.slice) if s.startswith("CRM_MCP_")}
            elif isinstance(n, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in n.targets
            ):
                names |= {s for s in _strings(n.value) if s.startswith("CRM_MCP_")}
    return names


def class_hints() -> list[str]:
    out, todo = [], [errors.CRMError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__dict__.get("hint"):
            out.append(cls.__dict__["hint"])
    return out


async def visible_text(client: Any) -> list[str]:
    """What the model reads of the catalogue: descriptions (tools, arguments, fields), prompts."""
    texts = [INSTRUCTIONS]
    for tool in (await client.list_tools()).tools:
        texts += [tool.description or "", *descriptions(wire(tool))]
    for prompt in (await client.list_prompts()).prompts:
        texts.append(prompt.description or "")
        args = {a.name: "x" for a in prompt.arguments or []}
        result = await client.get_prompt(prompt.name, args)
        texts += [getattr(m.content, "text", "") for m in result.messages]
    return texts


def descriptions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from descriptions(item)


def problems_in(
    texts: dict[str, list[str]], tools: set[str], fields: set[str], settings: set[str]
) -> list[str]:
    out = []
    for text, where in texts.items():
        for word in set(TOOL_WORD.findall(text)) - tools - fields:
            out.append(f"{word!r} is no tool, argument or field ({where[0]}): {text[:120]!r}")
        for name in set(SETTING.findall(text)) - settings:
            out.append(f"{name} is no setting ({where[0]}): {text[:120]!r}")
    return out


async def test_every_piece_of_advice_names_a_real_tool_and_setting(tmp_path: Path) -> None:
    async with sandbox_client(tmp_path) as client:
        listed = (await client.list_tools()).tools
        tools = {t.name for t in listed}
        fields: set[str] = set()
        for t in listed:
            for schema in (t.input_schema, t.output_schema or {}):
                fields |= set(re.findall(r"'([a-z][a-z0-9_]*)': \{", str(schema)))
                # nested objects are summarized as their field names ("Each: id, name, ...")
                for words in re.findall(r"(?:Each|Fields): ([^.]*)", " ".join(descriptions(schema))):
                    fields |= set(re.findall(r"[a-z][a-z0-9_]*", words))
        seen = await visible_text(client)
    texts = source_advice()
    for text in [*seen, *class_hints(), *WITHOUT.values()]:
        texts.setdefault(text, []).append("tools/list or errors.py")
    settings = known_settings()
    assert len(texts) > 100 and {"check_integration_health", "create_appointment"} <= tools
    problems = problems_in(texts, tools, fields, settings)
    assert not problems, "\n".join(problems)


async def test_the_checker_catches_what_the_issue_found() -> None:
    """The advice the issue quoted would be caught: a tool that does not exist, a stale setting."""
    bad = {
        "No calendar_id: list calendars with list_calendars first.": ["x"],
        "Set CRM_MCP_GHL_CALENDAR_ID_TYPO.": ["x"],
    }
    problems = problems_in(bad, {"find_free_slots"}, set(), known_settings())
    assert len(problems) == 2, problems


def text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_several_connections_ask_for_one_without_calling_it_hopeless(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Path
) -> None:
    """'pass `connection`' and 'retrying will not help' in one breath was the issue's example."""
    _sim, server = ghl_sandbox
    toml = tmp_path / "crm-mcp.toml"
    toml.write_text(
        "[connections.east]\n"
        'provider = "gohighlevel"\n'
        f'token = "east-token-123456"\nlocation_id = "LocEast000000000000a"\nbase_url = "{server.url}"\n'
    )
    async with harness(settings_factory(server.url, config_file=toml)) as h:
        r = await h.call("search_contacts", {"query": "jane"})
        message = text(r)
        assert r.is_error and "Several connections could do this" in message, message
        assert "Call again with `connection` set to one of them" in message
        assert "will not help" not in message.replace("Retrying unchanged will not help", "")

        unknown = await h.call("search_contacts", {"connection": "west"})
        assert unknown.is_error and "Configured connections: " in text(unknown)
        assert "Call again with one of those names" in text(unknown)


async def test_a_forbidden_location_is_not_blamed_on_the_token(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    """GoHighLevel answers 403 for a location the (valid) token may not use."""
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url, ghl_location_id="WrongLoc000000000000")) as h:
        r = await h.call("search_contacts", {"query": "jane"})
        message = text(r)
        assert r.is_error and "403" in message and "does not have access to this location" in message, message
        assert "replace the token" not in message and "new token" not in message, message
        assert "account id (location, portal or org)" in message and "generate_connector_config" in message


async def test_an_unreachable_crm_names_its_host(settings_factory: Any) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with harness(settings_factory(f"http://127.0.0.1:{port}")) as h:
        r = await h.call("search_contacts", {"query": "jane"})
        message = text(r)
        assert r.is_error and f"127.0.0.1:{port}" in message, message
        assert "UpstreamUnavailableError" in message and "Retrying later helps" in message


def test_error_tree_hints_read_as_one_instruction() -> None:
    for hint in class_hints():
        assert hint.endswith(".") and "\n" not in hint, hint
    assert os.linesep not in INSTRUCTIONS.strip().splitlines()[0]

"""The tool list every agent pays for in context on every session: measured through an MCP client.

The server is the one `crm-mcp serve --sandbox` runs (every provider's simulator configured), so
every tool is there. The budget is an average per tool of the compact JSON of `tools/list`, with
annotations and output schemas kept: growth past it fails here, so it stays visible.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import start_sandboxes
from crm_mcp.settings import load_settings

pytestmark = pytest.mark.anyio

BUDGET_PER_TOOL = 1_800  # compact JSON characters, on average (issue 12)
ANY_TYPE_KEYS = {"type", "anyOf", "oneOf", "allOf", "enum", "const", "$ref"}


@asynccontextmanager
async def sandbox_client(tmp_path: Path) -> AsyncIterator[Client]:
    """An in-memory MCP client of the server `serve --sandbox` builds (no database touched)."""
    with ExitStack() as stack:
        settings = load_settings(
            _env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}", state_dir=tmp_path
        )
        rt = Runtime(start_sandboxes(settings, stack))
        try:
            async with Client(build_server(rt)) as client:
                yield client
        finally:
            await rt.aclose()


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def wire(tool: Any) -> dict[str, Any]:
    return tool.model_dump(by_alias=True, exclude_none=True, mode="json")


def schemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema in a JSON schema, with where it is."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from schemas(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties", "propertyNames"):
        if isinstance(node.get(key), dict):
            yield from schemas(node[key], f"{path}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(node.get(key, [])):
            yield from schemas(sub, f"{path}.{key}[{i}]")
    for name, sub in node.get("$defs", {}).items():
        yield from schemas(sub, f"$defs.{name}")


async def test_tools_list_stays_within_budget(tmp_path: Path) -> None:
    async with sandbox_client(tmp_path) as client:
        tools = [wire(t) for t in (await client.list_tools()).tools]
    total = len(compact({"tools": tools}))
    average = total / len(tools)
    sizes = sorted(((len(compact(t)), t["name"]) for t in tools), reverse=True)
    print(f"\ntools/list: {total} characters of compact JSON for {len(tools)} tools, {average:.0f} per tool")
    print("largest:", ", ".join(f"{name} {size}" for size, name in sizes[:5]))
    assert all(t.get("annotations") and t.get("outputSchema") for t in tools)
    assert average <= BUDGET_PER_TOOL, f"{average:.0f} characters per tool > {BUDGET_PER_TOOL}"


async def test_schemas_are_lean_closed_and_typed(tmp_path: Path) -> None:
    """No null-wrapping unions in inputs (optional means "may be omitted"), no generated titles,
    inputs refuse unknown properties, and every value says its type (`--strict` clients warn
    otherwise)."""
    async with sandbox_client(tmp_path) as client:
        tools = [wire(t) for t in (await client.list_tools()).tools]
    problems = []
    for tool in tools:
        name, inp, out = tool["name"], tool["inputSchema"], tool["outputSchema"]
        if inp.get("additionalProperties") is not False:
            problems.append(f"{name}: input schema does not refuse unknown arguments")
        for where, kind in (("input", inp), ("output", out)):
            for path, node in schemas(kind):
                if where == "input" and {"type": "null"} in node.get("anyOf", []):
                    problems.append(f"{name} {where}{path}: anyOf with null")
                if "title" in node and isinstance(node["title"], str):
                    problems.append(f"{name} {where}{path}: generated title")
                if not ANY_TYPE_KEYS & node.keys():
                    problems.append(f"{name} {where}{path}: no type")
        if "$defs" in compact(out) and out.get("$defs") and len(compact(out["$defs"])) > 1000:
            problems.append(f"{name}: output schema repeats large definitions")
    assert not problems, "\n".join(problems)


async def test_descriptions_are_short_and_free_of_paths(tmp_path: Path) -> None:
    async with sandbox_client(tmp_path) as client:
        tools = [wire(t) for t in (await client.list_tools()).tools]
        prompts = (await client.list_prompts()).prompts
    path_like = re.compile(r"(?:\b[\w.-]+/)+[\w.-]+\.(?:toml|py|json|env|db)\b|~/|/home/|/etc/|/var/")
    for tool in tools:
        text = compact(tool)
        assert not path_like.search(text), f"{tool['name']} shows a file path: {path_like.search(text)}"
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", tool["description"].strip()) if s]
        assert len(sentences) <= 2, f"{tool['name']}: {len(sentences)} sentences: {tool['description']}"
    by_name = {t["name"]: t for t in tools}
    assert "reschedul" in by_name["update_appointment_status"]["description"].lower()
    for prompt in prompts:
        for arg in prompt.arguments or []:
            assert arg.description, f"prompt {prompt.name}: argument {arg.name} has no description"


async def test_idempotency_examples_are_obvious_placeholders(tmp_path: Path) -> None:
    """A realistic example key would be copied, and a copied key replays another booking."""
    async with sandbox_client(tmp_path) as client:
        tools = [wire(t) for t in (await client.list_tools()).tools]
    seen = 0
    for tool in tools:
        for name, prop in tool["inputSchema"].get("properties", {}).items():
            if "key" in name and name.endswith("key"):
                for example in prop.get("examples", []):
                    seen += 1
                    assert re.fullmatch(r"<[a-z-]+>", example), f"{tool['name']}.{name}: {example!r}"
    assert seen

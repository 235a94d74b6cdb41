"""`--read-only` and `--toolsets`: which tools a client sees, through an MCP client (tools/list)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from crm_mcp.cli import main
from crm_mcp.runtime import Runtime
from crm_mcp.server.app import build_server
from crm_mcp.server.run import start_sandboxes
from crm_mcp.server.toolsets import TOOLSETS
from crm_mcp.settings import load_settings

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def client_for(tmp_path: Path, **overrides: Any) -> AsyncIterator[Client]:
    """An in-memory MCP client of the `serve --sandbox` server, with settings overrides."""
    with ExitStack() as stack:
        settings = load_settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
            state_dir=tmp_path,
            **overrides,
        )
        rt = Runtime(start_sandboxes(settings, stack))
        try:
            async with Client(build_server(rt)) as client:
                yield client
        finally:
            await rt.aclose()


async def tool_list(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    async with client_for(tmp_path, **overrides) as client:
        return {t.name: t for t in (await client.list_tools()).tools}


async def test_every_registered_tool_is_in_exactly_one_toolset(tmp_path: Path) -> None:
    tools = await tool_list(tmp_path)
    listed = [name for names in TOOLSETS.values() for name in names]
    assert len(listed) == len(set(listed)), "a tool is in two toolsets"
    assert set(tools) == set(listed), {
        "registered but in no toolset": sorted(set(tools) - set(listed)),
        "in a toolset but not registered": sorted(set(listed) - set(tools)),
    }


async def test_read_only_lists_only_read_tools(tmp_path: Path) -> None:
    every = await tool_list(tmp_path / "all")
    tools = await tool_list(tmp_path / "ro", read_only=True)
    readers = {name for name, t in every.items() if t.annotations and t.annotations.read_only_hint is True}
    assert set(tools) == readers
    assert {"search_contacts", "get_sync_status", "check_integration_health"} <= set(tools)
    assert not {"create_appointment", "update_appointment_status", "retry_failed_sync"} & set(tools)
    assert all(t.annotations and t.annotations.read_only_hint is True for t in tools.values())


async def test_read_only_refuses_a_write_call(tmp_path: Path) -> None:
    async with client_for(tmp_path, read_only=True) as client:
        result = await client.call_tool("retry_failed_sync", {"all": True, "confirm": True})
    assert result.is_error
    assert "retry_failed_sync" in result.content[0].text  # type: ignore[union-attr]


async def test_toolsets_expose_a_subset(tmp_path: Path) -> None:
    tools = await tool_list(tmp_path, toolsets=["contacts", "diagnostics"])
    assert set(tools) == set(TOOLSETS["contacts"]) | set(TOOLSETS["diagnostics"])


async def test_toolsets_and_read_only_combine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CRM_MCP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRM_MCP_TOOLSETS", "appointments, sync")
    monkeypatch.setenv("CRM_MCP_READ_ONLY", "true")
    tools = await tool_list(tmp_path)
    assert set(tools) == {"list_appointments", "find_free_slots", "get_sync_status", "list_dead_letters"}


def test_unknown_toolset_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in list(os.environ):
        if key.startswith("CRM_MCP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRM_MCP_STATE_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--toolsets", "contacts,calendar"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'calendar'" in err
    for name in TOOLSETS:
        assert name in err

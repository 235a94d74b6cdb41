"""Shared fixtures. Async tests use anyio's pytest plugin on asyncio (`@pytest.mark.anyio`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get(
    "CRM_MCP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CRM_MCP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally when a service is down; fail on CI, where it must run."""
    if service_up(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if ON_CI:
        pytest.fail(f"{message} (CI must run these tests)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ghl_sandbox() -> Iterator[tuple[Any, Any]]:
    """A fresh GoHighLevel simulator on loopback: (simulator, server with .url)."""
    from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox

    sim, server = start_ghl_sandbox()
    try:
        yield sim, server
    finally:
        server.stop()


@pytest.fixture
def settings_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Build Settings for a sandbox URL with a throwaway SQLite database and fast retries."""
    for key in list(os.environ):
        if key.startswith("CRM_MCP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)

    def make(base_url: str, **overrides: Any) -> Any:
        from crm_mcp.providers.gohighlevel.sandbox.simulator import (
            SANDBOX_CALENDAR_ID,
            SANDBOX_LOCATION_ID,
            SANDBOX_TOKEN,
        )
        from crm_mcp.settings import load_settings

        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'test.db'}",
            "state_dir": tmp_path / "state",
            "ghl_token": SANDBOX_TOKEN,
            "ghl_location_id": SANDBOX_LOCATION_ID,
            "ghl_calendar_id": SANDBOX_CALENDAR_ID,
            "ghl_base_url": base_url,
            "sync_backoff_base_seconds": 0.01,
            "sync_backoff_cap_seconds": 0.05,
            "poll_interval_seconds": 0.01,
        }
        values.update(overrides)
        return load_settings(_env_file=None, **values)

    return make

"""The GoHighLevel simulator: see `simulator` for what it reproduces and how it is put together."""

from __future__ import annotations

from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    SANDBOX_USER_ID,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.sandbox.runner import SandboxServer

__all__ = [
    "SANDBOX_CALENDAR_ID",
    "SANDBOX_LOCATION_ID",
    "SANDBOX_TOKEN",
    "SANDBOX_USER_ID",
    "GHLSandbox",
    "GHLSandboxConfig",
    "start_ghl_sandbox",
]


def start_ghl_sandbox(
    config: GHLSandboxConfig | None = None, port: int = 0
) -> tuple[GHLSandbox, SandboxServer]:
    """A started GoHighLevel simulator and its server (call ``server.stop()`` when done)."""
    sandbox = GHLSandbox(config)
    return sandbox, SandboxServer(sandbox.app, port=port).start()

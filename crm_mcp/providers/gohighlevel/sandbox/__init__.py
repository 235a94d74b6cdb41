"""The GoHighLevel simulator: see `simulator` for what it reproduces and how it is put together."""

from __future__ import annotations

from typing import Any

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


class GHLSandboxHandle:
    """A running GoHighLevel simulator as `crm_mcp.connectors.provider.SandboxHandle`."""

    def __init__(self, sim: GHLSandbox, server: SandboxServer) -> None:
        self.sim = sim
        self.server = server
        self.url = server.url

    def connection_options(self) -> dict[str, Any]:
        return {
            "token": SANDBOX_TOKEN,
            "location_id": SANDBOX_LOCATION_ID,
            "calendar_id": SANDBOX_CALENDAR_ID,
            "base_url": self.url,
        }

    def credentials_text(self) -> list[str]:
        return [
            f"CRM_MCP_GHL_BASE_URL={self.url}",
            f"CRM_MCP_GHL_TOKEN={SANDBOX_TOKEN}",
            f"CRM_MCP_GHL_LOCATION_ID={SANDBOX_LOCATION_ID}",
            f"CRM_MCP_GHL_CALENDAR_ID={SANDBOX_CALENDAR_ID}",
        ]

    def set_limits(self, *, burst: int | None = None, interval_ms: int | None = None) -> None:
        self.sim.set_limits(burst_max=burst, burst_interval_ms=interval_ms)

    def stop(self) -> None:
        self.server.stop()


def start_handle(config: GHLSandboxConfig | None = None, port: int = 0) -> GHLSandboxHandle:
    """Start the simulator on loopback and return its handle."""
    sim, server = start_ghl_sandbox(config, port=port)
    return GHLSandboxHandle(sim, server)

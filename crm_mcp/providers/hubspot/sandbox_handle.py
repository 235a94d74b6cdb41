"""A running HubSpot simulator as `crm_mcp.connectors.provider.SandboxHandle`: its URL, the
connection options and `CRM_MCP_HUBSPOT_*` lines that reach it, and how to stop it.

Imported only by the provider's `sandbox` factory, so the simulator stays out of start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sandbox import (
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PORTAL_ID,
    SANDBOX_TOKEN,
    HubSpotSandbox,
    start_hubspot_sandbox,
)

if TYPE_CHECKING:
    from crm_mcp.sandbox.runner import SandboxServer


class HubSpotSandboxHandle:
    def __init__(self, sim: HubSpotSandbox, server: SandboxServer) -> None:
        self.sim = sim
        self.server = server
        self.url = server.url

    def connection_options(self) -> dict[str, Any]:
        return {
            "token": SANDBOX_TOKEN,
            "portal_id": str(SANDBOX_PORTAL_ID),
            "base_url": self.url,
            # HubSpot signs webhooks (v3) with the app's client secret
            "app_secret": SANDBOX_CLIENT_SECRET,
        }

    def credentials_text(self) -> list[str]:
        return [
            f"CRM_MCP_HUBSPOT_BASE_URL={self.url}",
            f"CRM_MCP_HUBSPOT_TOKEN={SANDBOX_TOKEN}",
            f"CRM_MCP_HUBSPOT_PORTAL_ID={SANDBOX_PORTAL_ID}",
            f"CRM_MCP_HUBSPOT_APP_SECRET={SANDBOX_CLIENT_SECRET}",
        ]

    def set_limits(self, *, burst: int | None = None, interval_ms: int | None = None) -> None:
        """Change the simulated burst limit (requests per window) and window."""
        self.sim.set_limits(burst_max=burst, burst_interval_ms=interval_ms)

    def stop(self) -> None:
        self.server.stop()


def start_handle(port: int = 0) -> HubSpotSandboxHandle:
    """Start the simulator on loopback and return its handle."""
    sim, server = start_hubspot_sandbox(port=port)
    return HubSpotSandboxHandle(sim, server)

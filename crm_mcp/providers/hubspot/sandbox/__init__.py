"""A faithful local HubSpot CRM v3 simulator, served over real HTTP by ``SandboxServer``.

Connectors, the sync engine and benchmarks run against this instead of patching the network. It
reproduces what a HubSpot client has to cope with — string-only property values and a schema that
refuses unknown properties, 409 on a duplicate email, batch endpoints answering 207 with per-item
errors, a search API with its own 4/s limit and a 10,000-result ceiling, burst and daily limits
with their ``X-HubSpot-RateLimit-*`` headers, OAuth access tokens that expire after 30 minutes,
associations instead of foreign keys, v3-signed webhooks — plus switchable faults. Wire shapes
follow HubSpot's official OpenAPI files; see :mod:`.sandbox` for how the parts fit.
"""

from __future__ import annotations

from crm_mcp.providers.hubspot.sandbox.config import (
    SANDBOX_APP_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PORTAL_ID,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    HubSpotSandboxConfig,
)
from crm_mcp.providers.hubspot.sandbox.sandbox import HubSpotSandbox
from crm_mcp.sandbox.runner import SandboxServer

__all__ = [
    "SANDBOX_APP_ID",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_PORTAL_ID",
    "SANDBOX_REFRESH_TOKEN",
    "SANDBOX_TOKEN",
    "HubSpotSandbox",
    "HubSpotSandboxConfig",
    "start_hubspot_sandbox",
]


def start_hubspot_sandbox(
    config: HubSpotSandboxConfig | None = None, port: int = 0
) -> tuple[HubSpotSandbox, SandboxServer]:
    """A started HubSpot simulator and its server (call ``server.stop()`` when done)."""
    sandbox = HubSpotSandbox(config)
    return sandbox, SandboxServer(sandbox.app, port=port).start()

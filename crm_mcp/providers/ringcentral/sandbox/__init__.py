"""A local RingCentral simulator (call log, recordings, OAuth and JWT grants, usage-plan limits),
served over real HTTP by `SandboxServer`; see `sandbox` for how the parts fit."""

from __future__ import annotations

from crm_mcp.sandbox.runner import SandboxServer

from .config import (
    SANDBOX_ACCOUNT_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_JWT,
    SANDBOX_REFRESH_TOKEN,
    RingCentralSandboxConfig,
)
from .sandbox import RingCentralSandbox

__all__ = [
    "SANDBOX_ACCOUNT_ID",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "SANDBOX_JWT",
    "SANDBOX_REFRESH_TOKEN",
    "RingCentralSandbox",
    "RingCentralSandboxConfig",
    "start_ringcentral_sandbox",
]


def start_ringcentral_sandbox(
    config: RingCentralSandboxConfig | None = None, port: int = 0
) -> tuple[RingCentralSandbox, SandboxServer]:
    """A started simulator and its server (call `server.stop()` when done)."""
    sandbox = RingCentralSandbox(config)
    return sandbox, SandboxServer(sandbox.app, port=port).start()

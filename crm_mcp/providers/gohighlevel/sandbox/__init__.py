"""The GoHighLevel simulator: see `simulator` for what it reproduces and how it is put together."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from typing import Any

from crm_mcp.connectors.provider import SimulatorHandle
from crm_mcp.providers.gohighlevel.sandbox.oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from crm_mcp.providers.gohighlevel.sandbox.signer import GHLWebhookSigner, ghl_event_body
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


class GHLSandboxHandle(SimulatorHandle[GHLSandbox]):
    """A running GoHighLevel simulator as `crm_mcp.connectors.provider.SandboxHandle`.

    Webhooks are signed with a key pair generated for this handle (RSA for ``x-wh-signature``,
    Ed25519 for ``X-GHL-Signature``); `connection_options` hands out the public halves.
    """

    @functools.cached_property
    def signer(self) -> GHLWebhookSigner:
        # 2048-bit RSA (GoHighLevel's own is 4096): the same scheme, generated in a tenth of the time
        return GHLWebhookSigner(rsa_bits=2048)

    def connection_options(self) -> dict[str, Any]:
        return {
            "token": SANDBOX_TOKEN,
            "location_id": SANDBOX_LOCATION_ID,
            "calendar_id": SANDBOX_CALENDAR_ID,
            "base_url": self.url,
            "webhook_public_key": self.signer.rsa_public_pem,
            "webhook_ed25519_public_key": self.signer.ed25519_public_raw_b64,
        }

    def credentials_text(self) -> list[str]:
        return [
            f"CRM_MCP_GHL_BASE_URL={self.url}",
            f"CRM_MCP_GHL_TOKEN={SANDBOX_TOKEN}",
            f"CRM_MCP_GHL_LOCATION_ID={SANDBOX_LOCATION_ID}",
            f"CRM_MCP_GHL_CALENDAR_ID={SANDBOX_CALENDAR_ID}",
            # one line (the RSA key is a multi-line PEM); either signature verifies a delivery
            f"CRM_MCP_GHL_WEBHOOK_ED25519_PUBLIC_KEY={self.signer.ed25519_public_raw_b64}",
        ]

    def set_limits(self, *, burst: int | None = None, interval_ms: int | None = None) -> None:
        self.sim.set_limits(burst_max=burst, burst_interval_ms=interval_ms)

    def oauth_options(self) -> dict[str, Any] | None:
        """A Marketplace app install: a fresh refresh token (it rotates on every use)."""
        options = {k: v for k, v in self.connection_options().items() if k != "token"}
        return {
            **options,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "refresh_token": self.sim.oauth.install(),
        }

    def expire_tokens(self) -> None:
        self.sim.oauth.expire_access_tokens()

    def token_grants(self) -> int:
        return int(self.sim.oauth.grants["refresh_token"])

    def contact_count(self) -> int:
        return len(self.sim.snapshot()["contacts"])

    def webhook_delivery(
        self, url: str, *, tenant: str | None = None, timestamp: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A signed ``ContactUpdate`` (GoHighLevel signs the body alone, so `url` is not used)."""
        payload = {
            "type": "ContactUpdate",
            "locationId": tenant or SANDBOX_LOCATION_ID,
            "id": f"SbxWh{uuid.uuid4().hex[:15]}",
            "firstName": "Webhook",
            "email": "webhook@example.com",
        }
        body = ghl_event_body(payload, timestamp=timestamp or datetime.now(UTC), webhook_id=str(uuid.uuid4()))
        return body, self.signer.headers(body)

    def reset(self) -> None:
        super().reset()
        self.sim.oauth.revoke()
        self.sim.oauth.grants.clear()

    def summary(self) -> list[tuple[str, str]]:
        """What the CRM holds, for `crm-mcp demo`: an ("appointment", line) row per calendar event
        (its status in GoHighLevel's words), then ("contacts" | "notes" | "tasks", count) rows."""
        snap = self.sim.snapshot()
        names = {c["id"]: f"{c.get('firstName', '')} {c.get('lastName', '')}" for c in snap["contacts"]}
        rows = []
        for a in snap["appointments"]:
            who = names.get(a.get("contactId"), "?").strip()
            rows.append(("appointment", f"{a['startTime']}  {who}  {a.get('appointmentStatus', '')}"))
        return rows + [(kind, str(len(snap[kind]))) for kind in ("contacts", "notes", "tasks")]


def start_handle(config: GHLSandboxConfig | None = None, port: int = 0) -> GHLSandboxHandle:
    """Start the simulator on loopback and return its handle."""
    sim, server = start_ghl_sandbox(config, port=port)
    return GHLSandboxHandle(sim, server)

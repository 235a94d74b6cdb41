"""A running HubSpot simulator as `crm_mcp.connectors.provider.SandboxHandle`: its URL, the
connection options and `CRM_MCP_HUBSPOT_*` lines that reach it, how to stop it, and the controls
the conformance suite drives (faults, OAuth, signed webhooks, reset).

Imported only by the provider's `sandbox` factory, so the simulator stays out of start-up.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crm_mcp.connectors.provider import SimulatorHandle

from .sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PORTAL_ID,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    HubSpotSandbox,
    start_hubspot_sandbox,
)

if TYPE_CHECKING:
    from crm_mcp.sandbox.runner import SandboxServer


class HubSpotSandboxHandle(SimulatorHandle[HubSpotSandbox]):
    def __init__(self, sim: HubSpotSandbox, server: SandboxServer) -> None:
        super().__init__(sim, server)
        self._webhook_contacts = itertools.count(1)

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

    def oauth_options(self) -> dict[str, Any] | None:
        """The simulator's OAuth app install (HubSpot refresh tokens do not rotate)."""
        options = {k: v for k, v in self.connection_options().items() if k != "token"}
        return {
            **options,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "refresh_token": SANDBOX_REFRESH_TOKEN,
        }

    def expire_tokens(self) -> None:
        self.sim.oauth.expire_access_tokens()

    def token_grants(self) -> int:
        return int(self.sim.oauth.grants["refresh_token"])

    def contact_count(self) -> int:
        return self.sim.contact_count()

    def webhook_delivery(
        self, url: str, *, tenant: str | None = None, timestamp: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A signed ``contact.creation`` for a contact stored for the occasion (HubSpot sends
        events only for contacts it holds); `tenant` replaces the event's ``portalId``."""
        when = timestamp or datetime.fromtimestamp(self.sim.config.clock(), UTC)
        email = f"webhook-{next(self._webhook_contacts)}-{int(when.timestamp())}@example.com"
        (contact_id,) = self.sim.seed_contacts([{"email": email, "firstname": "Webhook"}])
        event = self.sim.contact_event(
            contact_id, "contact.creation", occurred_at_ms=int(when.timestamp() * 1000)
        )
        if tenant is not None:
            event["portalId"] = int(tenant) if tenant.isdigit() else tenant
        return self.sim.webhook_delivery(url, [event], timestamp=when)

    def summary(self) -> list[tuple[str, str]]:
        """What the CRM holds, for `crm-mcp demo`: an ("appointment", line) row per meeting (its
        outcome in HubSpot's words), then ("contacts" | "notes" | "tasks", count) rows."""
        snap = self.sim.snapshot()
        rows = []
        for meeting in snap["meetings"]:
            p = meeting["properties"]
            when, title = p.get("hs_meeting_start_time", ""), p.get("hs_meeting_title", "")
            rows.append(("appointment", f"{when}  {title}  {p.get('hs_meeting_outcome', '')}"))
        return rows + [(kind, str(len(snap[kind]))) for kind in ("contacts", "notes", "tasks")]


def start_handle(port: int = 0) -> HubSpotSandboxHandle:
    """Start the simulator on loopback and return its handle."""
    sim, server = start_hubspot_sandbox(port=port)
    return HubSpotSandboxHandle(sim, server)

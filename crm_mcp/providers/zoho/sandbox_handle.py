"""A running Zoho CRM simulator as `crm_mcp.connectors.provider.SandboxHandle`: its URL, the
connection options and `CRM_MCP_ZOHO_*` lines that reach it, and the controls the conformance
suite drives (faults, OAuth, notification callbacks, reset).

Imported only by the provider's `sandbox` factory, so the simulator stays out of start-up.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crm_mcp.connectors.provider import SimulatorHandle

from .sandbox import (
    SANDBOX_CHANNEL_ID,
    SANDBOX_CHANNEL_TOKEN,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    ZohoSandbox,
    start_zoho_sandbox,
)

if TYPE_CHECKING:
    from crm_mcp.sandbox.runner import SandboxServer


class ZohoSandboxHandle(SimulatorHandle[ZohoSandbox]):
    def __init__(self, sim: ZohoSandbox, server: SandboxServer) -> None:
        super().__init__(sim, server)
        self._people = itertools.count(1)

    def connection_options(self) -> dict[str, Any]:
        accounts, api = self.sim.hosts(self.url)
        return {
            "token": SANDBOX_TOKEN,
            "data_centre": self.sim.data_centre,
            "accounts_url": accounts,
            "api_domain": api,
            "channel_id": SANDBOX_CHANNEL_ID,
            "channel_token": SANDBOX_CHANNEL_TOKEN,
        }

    def credentials_text(self) -> list[str]:
        return [f"CRM_MCP_ZOHO_{k.upper()}={v}" for k, v in self.connection_options().items()] + [
            f"# or OAuth: CRM_MCP_ZOHO_CLIENT_ID={SANDBOX_CLIENT_ID} CRM_MCP_ZOHO_CLIENT_SECRET="
            f"{SANDBOX_CLIENT_SECRET} CRM_MCP_ZOHO_REFRESH_TOKEN={SANDBOX_REFRESH_TOKEN} (no TOKEN)"
        ]

    def set_limits(self, *, burst: int | None = None, interval_ms: int | None = None) -> None:
        """Zoho has no burst window: `burst` sets the concurrency cap (and credits never run out first)."""
        if burst is not None:
            self.sim.concurrency = burst
            self.sim.credits.limit = max(self.sim.credits.limit, burst * 10)

    def oauth_options(self) -> dict[str, Any] | None:
        options = {k: v for k, v in self.connection_options().items() if k != "token"}
        return {
            **options,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "refresh_token": SANDBOX_REFRESH_TOKEN,
        }

    def expire_tokens(self) -> None:
        self.sim.accounts.expire_access_tokens()

    def token_grants(self) -> int:
        return int(self.sim.accounts.grants["refresh_token"])

    def contact_count(self) -> int:
        return self.sim.contact_count()

    def webhook_delivery(
        self, url: str, *, tenant: str | None = None, timestamp: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A Notifications callback for a lead stored for the occasion; `tenant` replaces the
        channel id (the channel token stays valid: Zoho echoes whatever token the channel has)."""
        n = next(self._people)
        with self.sim.lock:
            outcome = self.sim.store.insert(
                "Leads", {"Last_Name": f"Webhook{n}", "Email": f"webhook-{n}@example.com"}, 0
            )
        rid = str(outcome.details["id"])
        body = self.sim.notification(
            "Leads", "insert", [rid], channel_id=tenant or SANDBOX_CHANNEL_ID, when=timestamp
        )
        return body, {"Content-Type": "application/json"}

    def forge_webhook(self, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        """The same delivery from someone who does not know the channel token. Zoho signs no body
        (the echoed token is its only proof), so tampering with the bytes alone proves nothing;
        a forgery is a callback without the right token."""
        data = json.loads(body)
        data["token"] = "guessed-" + str(data.get("token", ""))[::-1]
        return json.dumps(data).encode(), headers

    def summary(self) -> list[tuple[str, str]]:
        """What the CRM holds, for `crm-mcp demo`: an ("appointment", line) row per event, then counts."""
        tables = self.sim.store.tables
        rows = [
            (
                "appointment",
                "  ".join(str(e.get(k, "")) for k in ("Start_DateTime", "Event_Title", "Appointment_Status")),
            )
            for e in self.sim.store.rows("Events")
        ]
        counts = {
            "leads": "Leads",
            "contacts": "Contacts",
            "notes": "Notes",
            "tasks": "Tasks",
            "calls": "Calls",
        }
        return (
            rows
            + [(kind, str(len(tables[m]))) for kind, m in counts.items()]
            + [("attachments", str(len(self.sim.store.attachments)))]
        )


def start_handle(port: int = 0) -> ZohoSandboxHandle:
    """Start the simulator on loopback and return its handle."""
    sim, server = start_zoho_sandbox(port=port)
    return ZohoSandboxHandle(sim, server)

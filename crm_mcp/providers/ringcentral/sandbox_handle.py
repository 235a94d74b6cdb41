"""A running RingCentral simulator as `crm_mcp.connectors.provider.SandboxHandle`: its URL, the
connection options and `CRM_MCP_RINGCENTRAL_*` lines that reach it, how to stop it, and the
controls the conformance suite drives (faults, OAuth, limits, reset).

RingCentral sends no CRM webhooks and holds no contacts: `webhook_delivery` is refused and
`contact_count` is 0 (the suite skips those cases by capability). Imported only by the
provider's `sandbox` factory, so the simulator stays out of start-up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_mcp.connectors.provider import SimulatorHandle

from .sandbox import (
    SANDBOX_ACCOUNT_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_JWT,
    SANDBOX_REFRESH_TOKEN,
    RingCentralSandbox,
    start_ringcentral_sandbox,
)


class RingCentralSandboxHandle(SimulatorHandle[RingCentralSandbox]):
    def connection_options(self) -> dict[str, Any]:
        """A server-to-server app: the JWT grant."""
        return {
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "jwt": SANDBOX_JWT,
            "base_url": self.url,
            "media_url": self.url,
            "account_id": SANDBOX_ACCOUNT_ID,
        }

    def oauth_options(self) -> dict[str, Any] | None:
        """An OAuth install instead: a refresh token (single use, rotated on every refresh)."""
        options = {k: v for k, v in self.connection_options().items() if k != "jwt"}
        return {**options, "refresh_token": SANDBOX_REFRESH_TOKEN}

    def credentials_text(self) -> list[str]:
        described = self.sim.describe()
        return [
            f"CRM_MCP_RINGCENTRAL_BASE_URL={self.url}",
            f"CRM_MCP_RINGCENTRAL_CLIENT_ID={SANDBOX_CLIENT_ID}",
            f"CRM_MCP_RINGCENTRAL_CLIENT_SECRET={SANDBOX_CLIENT_SECRET}",
            f"CRM_MCP_RINGCENTRAL_JWT={SANDBOX_JWT}",
            f"CRM_MCP_RINGCENTRAL_ACCOUNT_ID={SANDBOX_ACCOUNT_ID}",
            f"# {described['calls']} calls over {self.sim.config.days} days "
            f"({described['recordings']} recordings, {described['recordings_pending']} processing); "
            f'reseed: POST {self.url}/_sandbox/calls {{"calls": 500, "days": 3}}',
        ]

    def set_limits(self, *, burst: int | None = None, interval_ms: int | None = None) -> None:
        """`burst` becomes every group's limit per window; `interval_ms` the window."""
        if burst is not None:
            self.sim.set_limits(all=burst)
        if interval_ms is not None:
            self.sim.config.window_s = max(1, interval_ms // 1000)

    def expire_tokens(self) -> None:
        self.sim.oauth.expire_access_tokens()

    def token_grants(self) -> int:
        grants = self.sim.oauth.grants
        return int(grants["refresh_token"] + grants["jwt"])

    def contact_count(self) -> int:
        return 0

    def webhook_delivery(
        self, url: str, *, tenant: str | None = None, timestamp: datetime | None = None
    ) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError("the RingCentral simulator sends no CRM webhooks")

    # -- what the call-log conformance cases (tests/providers/test_conformance_call_logs.py) read
    def session_results(self) -> dict[str, str]:
        """Every call the simulator holds, by session id, with its neutral outcome as the caller
        lived it (answered by anyone / reached voicemail / missed), not per leg."""
        out: dict[str, str] = {}
        for call in self.sim.calls_now():
            voicemail = any(leg.result == "Voicemail" for leg in call.legs)
            out[call.telephony_session_id] = (
                "answered" if call.answered else "voicemail" if voicemail else "missed"
            )
        return out

    def release_recordings(self) -> int:
        """Recordings still processing become ready; how many did."""
        return self.sim.release_recordings()

    def summary(self) -> list[tuple[str, str]]:
        described = self.sim.describe()
        return [(k, str(described[k])) for k in ("calls", "callers", "recordings")]


def start_handle(port: int = 0) -> RingCentralSandboxHandle:
    """Start the simulator on loopback and return its handle."""
    sim, server = start_ringcentral_sandbox(port=port)
    return RingCentralSandboxHandle(sim, server)

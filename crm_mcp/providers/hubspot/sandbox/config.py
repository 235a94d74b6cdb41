"""Published test credentials and the knobs of one simulated HubSpot portal.

The credentials are shaped like real ones (a ``pat-na1-…`` private-app token, UUID client id and
secret) so a connector's format checks and log redaction see what production would give them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

SANDBOX_TOKEN = "pat-na1-0c5e1b7a-5d1e-4e38-9c2f-5a4d0b7e9f10"  # noqa: S105 - a published test credential
SANDBOX_PORTAL_ID = 62515
SANDBOX_APP_ID = 54321
SANDBOX_CLIENT_ID = "7d1c3e5a-2b4f-4c6d-8e9f-0a1b2c3d4e5f"
SANDBOX_CLIENT_SECRET = "f0e1d2c3-b4a5-4968-8776-655443322110"  # noqa: S105 - a published test credential
SANDBOX_REFRESH_TOKEN = "6f18f21e-a743-4509-b7fd-1a5e632fffa1"  # noqa: S105 - a published test credential
SANDBOX_TIME_ZONE = "US/Eastern"


@dataclass
class HubSpotSandboxConfig:
    """Everything a test may want to vary; defaults are HubSpot's documented Free/Starter limits.

    ``clock`` drives token expiry, rate-limit windows, record timestamps and webhook times, so a
    test moves time by swapping it instead of sleeping.
    """

    token: str = SANDBOX_TOKEN
    portal_id: int = SANDBOX_PORTAL_ID
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    refresh_token: str = SANDBOX_REFRESH_TOKEN
    burst_max: int = 100
    burst_interval_ms: int = 10_000
    daily_limit: int = 250_000
    search_per_second: int = 4
    access_token_ttl_s: int = 1800
    retry_after_on_429: bool = True
    latency_s: float = 0.0  # every API answer leaves this long after its request arrived
    seed: int = 0
    clock: Callable[[], float] = field(default=time.time)
    time_zone: str = SANDBOX_TIME_ZONE
    app_id: int = SANDBOX_APP_ID

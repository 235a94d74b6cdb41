"""Time and connectors the RingCentral tests share: one virtual clock for the client (monotonic),
its token expiry and the simulator (epoch), moved only by the client's `sleep`."""

from __future__ import annotations

from typing import Any

from crm_mcp.providers.ringcentral.connector import RingCentralConnector
from crm_mcp.providers.ringcentral.sandbox import (
    SANDBOX_ACCOUNT_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_JWT,
    SANDBOX_REFRESH_TOKEN,
)
from tests.providers.support import FakeTime, NoJitter


def connector(url: str, fake: FakeTime, *, oauth: bool = False, **kw: Any) -> RingCentralConnector:
    creds: dict[str, Any] = {"refresh_token": SANDBOX_REFRESH_TOKEN} if oauth else {"jwt": SANDBOX_JWT}
    return RingCentralConnector(
        "rc",
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        base_url=url,
        media_url=url,
        account_id=SANDBOX_ACCOUNT_ID,
        clock=fake.clock,
        sleep=fake.sleep,
        token_clock=fake.wall,
        rng=NoJitter(),
        **creds,
        **kw,
    )

"""Published test credentials and the knobs of one simulated RingCentral account.

`calls` / `days` say how much call history the generator makes (env `CRM_MCP_SANDBOX_CALLS`
and `CRM_MCP_SANDBOX_CALL_DAYS` set them for `crm-mcp sandbox` and `serve --sandbox`; POST
`/_sandbox/calls` re-seeds a running simulator).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SANDBOX_CLIENT_ID = "rcSbxClient0Id1A2b3C4"
SANDBOX_CLIENT_SECRET = "rcSbxSecret5e6F7g8H9i0J1k2L3m4N5o6P7q8R9s0"  # noqa: S105 - a published test credential
SANDBOX_JWT = (
    "eyJraWQiOiJzYngiLCJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9."
    "eyJhdWQiOiJzYW5kYm94IiwiaXNzIjoiY3JtLW1jcCIsInN1YiI6IjYyMjY0NDI1MDA4In0.c2FuZGJveC1zaWduYXR1cmU"
)
SANDBOX_REFRESH_TOKEN = "U0pDMDFQMDFQQVMwMHxBQUF-sbx-refresh-0"  # noqa: S105 - a published test credential
SANDBOX_ACCOUNT_ID = "403391985008"
SANDBOX_MAIN_NUMBER = "+16505550100"


def _env_int(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, "") or default))
    except ValueError:
        return default


@dataclass
class RingCentralSandboxConfig:
    """Everything a test may vary; limits default to RingCentral's documented usage plans.

    `clock` (epoch seconds) drives token expiry, rate-limit windows and penalties, recording
    readiness and the generated call times, so a test moves time instead of sleeping.
    """

    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    jwt: str = SANDBOX_JWT
    refresh_token: str = SANDBOX_REFRESH_TOKEN
    account_id: str = SANDBOX_ACCOUNT_ID
    group_limits: dict[str, int] = field(
        default_factory=lambda: {"light": 50, "medium": 40, "heavy": 10, "auth": 5}
    )
    window_s: int = 60
    penalty_s: int = 60
    retry_after_on_429: bool = True
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 604800
    calls: int = field(default_factory=lambda: _env_int("CRM_MCP_SANDBOX_CALLS", 120))
    days: int = field(default_factory=lambda: max(1, _env_int("CRM_MCP_SANDBOX_CALL_DAYS", 3)))
    pending_recordings: int = 3  # the most recent recordings are still processing
    recording_bytes_per_second: int = 2000  # 16 kbit/s MP3
    seed: int = 7
    clock: Callable[[], float] = field(default=time.time)

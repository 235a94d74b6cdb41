"""RingCentral's quirks as data: paths, rate-limit groups and headers, and its call results.

Sources: RingCentral's official OpenAPI description (`rc-public-openapi.yml`, as published in
tylerlong/ringcentral-open-api-parser: `readCompanyCallLog`, `readCallRecording`,
`readCallRecordingContent`, `CallLogRecord`, `CallResultEnum`, `PerPageWithMax`, each operation's
`x-throttling-group`) and crm-apis.md §4 (token endpoint, lifetimes, 429 penalty window).
"""

from __future__ import annotations

from crm_mcp.connectors.base import CallResult, ProviderSpec

from .settings import DEFAULT_BASE_URL

TOKEN_PATH = "/restapi/oauth/token"  # noqa: S105 - a URL path, not a secret
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
API = "/restapi/v1.0"
EXTENSION_PATH = f"{API}/account/{{account}}/extension/~"  # ping: who the credentials are (Light)
CALL_LOG_PATH = f"{API}/account/{{account}}/call-log"  # readCompanyCallLog (Heavy)

# perPage: 1..1000 (PerPageWithMax). The largest page: every page costs a Heavy request (10 a
# minute), and one more to complete the session that may straddle its end
PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000

# Usage-plan groups, each a sliding 60 s window per (user, app): documented defaults (crm-apis
# §4.5). Every call this connector makes is Heavy (the OAS's x-throttling-group of the call log,
# recording metadata and recording content) except the identity check, which is Light.
WINDOW_S = 60.0
GROUP_LIMITS: dict[str, int] = {"light": 50, "medium": 40, "heavy": 10, "auth": 5}
PENALTY_S = 60.0  # a 429 without Retry-After: RingCentral's penalty interval (default 60 s)
GROUP_HEADER = "X-Rate-Limit-Group"
LIMIT_HEADER = "X-Rate-Limit-Limit"
REMAINING_HEADER = "X-Rate-Limit-Remaining"
WINDOW_HEADER = "X-Rate-Limit-Window"  # seconds, not milliseconds

# CallResultEnum -> the neutral result of one record or leg. A session is answered when any of
# its legs was, voicemail when it reached voicemail, else missed (see wire.session_from_records).
ANSWERED_RESULTS = frozenset({"Accepted", "Call connected", "Answered Not Accepted", "Received"})
VOICEMAIL_RESULTS = frozenset({"Voicemail", "Sent to Voicemail"})
# someone else took it (another member of a queue, another device): answered, not by this leg
ELSEWHERE_RESULTS = frozenset({"Answered Elsewhere"})
IN_PROGRESS_RESULTS = frozenset({"In Progress"})


def neutral_result(result: str | None) -> CallResult:
    """One record's or leg's RingCentral result word as the neutral answered / voicemail / missed.
    Everything that is neither answered nor voicemail (Missed, No Answer, Busy, Rejected, Hang Up,
    Abandoned, Declined, Stopped, failures, ...) is missed."""
    if result in ANSWERED_RESULTS or result in ELSEWHERE_RESULTS:
        return "answered"
    if result in VOICEMAIL_RESULTS:
        return "voicemail"
    return "missed"


RINGCENTRAL_SPEC = ProviderSpec(
    name="ringcentral",
    default_base_url=DEFAULT_BASE_URL,
    # the grouped limiter (limits.py) learns these per group; the connection-wide defaults below
    # are the Heavy group's, which is what nearly every call of this connector draws on
    remaining_header=REMAINING_HEADER,
    limit_header=LIMIT_HEADER,
    request_id_header="RCRequestId",
    burst_limit=GROUP_LIMITS["heavy"],
    burst_interval_s=WINDOW_S,
    tenant_option="account_id",
    tenant_label="account",
    ping_checks_tenant=True,  # ping is GET /restapi/v1.0/account/{account_id}/extension/~
)

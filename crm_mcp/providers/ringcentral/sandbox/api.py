"""The simulated account's API: the call log, recording metadata and content, the caller's extension.

Paths are the OAS's (`readCompanyCallLog`, `readCallRecording`, `readCallRecordingContent`,
`readExtension`); the account is `~` or the account's id. The call log lists voice calls that
started in [dateFrom, dateTo) (default: the 24 h before dateTo), newest first, `perPage` (1-1000
or `max`) per page with `paging` and `navigation` links; it filters by `telephonySessionId`,
`sessionId`, `direction`. Recording content streams in chunks (`audio/mpeg`); while a recording
is still processing, the call's record says `finished: false` and the content is 404 `CMN-102`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .calls import EXTENSIONS, SimCall, records
from .oauth import api_error

if TYPE_CHECKING:
    from .sandbox import RingCentralSandbox

ACCOUNT = "/restapi/v1.0/account/{account}"
CHUNK = 16384


def _time(value: str | None, default: float) -> float:
    """Raises: OAuthRefused 400 CMN-101 for a date that is not ISO 8601."""
    if not value:
        return default
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise api_error(400, "CMN-101", f"Parameter [dateFrom/dateTo] value is invalid: {value}") from None


def _per_page(value: str | None) -> int:
    if value in (None, ""):
        return 100
    if value == "max":
        return 1000
    try:
        n = int(value)
    except ValueError:
        raise api_error(400, "CMN-101", f"Parameter [perPage] value is invalid: {value}") from None
    if n < 1:
        raise api_error(400, "CMN-101", "Parameter [perPage] value is invalid")
    return min(n, 1000)


def audio(recording_id: str, size: int) -> bytes:
    """Deterministic MP3-looking bytes of `size`."""
    seed = hashlib.sha256(recording_id.encode()).digest()
    body = b"ID3\x04\x00\x00\x00\x00\x00\x00" + seed * (size // len(seed) + 1)
    return body[:size]


class CallLogApi:
    def __init__(self, sb: RingCentralSandbox) -> None:
        self.sb = sb

    def routes(self) -> list[Route]:
        return [
            Route(f"{ACCOUNT}/call-log", self.call_log, methods=["GET"]),
            Route(f"{ACCOUNT}/recording/{{recording}}", self.recording, methods=["GET"]),
            Route(f"{ACCOUNT}/recording/{{recording}}/content", self.content, methods=["GET"]),
            Route(f"{ACCOUNT}/extension/{{extension}}", self.extension, methods=["GET"]),
        ]

    def _account(self, request: Request) -> str:
        account = request.path_params["account"]
        if account not in ("~", self.sb.config.account_id):
            raise api_error(404, "CMN-102", "Resource for parameter [accountId] is not found")
        return self.sb.config.account_id

    async def extension(self, request: Request) -> Response:
        account = self._account(request)
        number, ext_id, name = EXTENSIONS[0]
        return JSONResponse({
            "uri": f"{self.sb.base(request)}/restapi/v1.0/account/{account}/extension/{ext_id}",
            "id": ext_id, "extensionNumber": number, "name": name, "type": "User", "status": "Enabled",
            "account": {"id": account},
        })  # fmt: skip

    async def call_log(self, request: Request) -> Response:
        account = self._account(request)
        q = request.query_params
        now = self.sb.config.clock()
        date_to = _time(q.get("dateTo"), now)
        date_from = _time(q.get("dateFrom"), date_to - 86400)
        per_page = _per_page(q.get("perPage"))
        try:
            page = max(1, int(q.get("page") or 1))
        except ValueError:
            raise api_error(400, "CMN-101", "Parameter [page] value is invalid") from None
        detailed = q.get("view") == "Detailed"
        calls: list[SimCall] = [c for c in self.sb.calls_now() if date_from <= c.start < date_to]
        if q.get("telephonySessionId"):
            calls = [c for c in calls if c.telephony_session_id == q["telephonySessionId"]]
        if q.get("sessionId"):
            calls = [c for c in calls if c.session_id == q["sessionId"]]
        if q.get("direction"):
            calls = [c for c in calls if c.direction in q.getlist("direction")]
        if q.get("type") not in (None, "Voice"):
            calls = []
        base = self.sb.base(request)
        rows: list[dict[str, Any]] = []
        for call in sorted(calls, key=lambda c: (-c.start, c.telephony_session_id)):
            rows += records(call, base, account, self.sb.main_number, detailed)
        first = (page - 1) * per_page
        chunk = rows[first : first + per_page]
        path = f"{base}{request.url.path}"

        def link(n: int) -> dict[str, str]:
            return {"uri": f"{path}?{urlencode({**dict(q), 'page': str(n), 'perPage': str(per_page)})}"}

        navigation = {"firstPage": link(1)}
        if first + per_page < len(rows):
            navigation["nextPage"] = link(page + 1)
        if page > 1:
            navigation["previousPage"] = link(page - 1)
        paging: dict[str, Any] = {"page": page, "perPage": per_page}
        if chunk:
            paging |= {"pageStart": first, "pageEnd": first + len(chunk) - 1}
        self.sb.counters["call_log_pages"] += 1
        return JSONResponse(
            {"uri": str(request.url), "records": chunk, "paging": paging, "navigation": navigation}
        )

    async def recording(self, request: Request) -> Response:
        account = self._account(request)
        rec = self.sb.recording(request.path_params["recording"])
        base = self.sb.base(request)
        return JSONResponse({
            "uri": f"{base}/restapi/v1.0/account/{account}/recording/{rec.id}", "id": rec.id,
            "contentUri": f"{base}/restapi/v1.0/account/{account}/recording/{rec.id}/content",
            "contentType": "audio/mpeg", "duration": rec.duration,
        })  # fmt: skip

    async def content(self, request: Request) -> Response:
        self._account(request)
        rec = self.sb.recording(request.path_params["recording"], ready=True)
        data = audio(rec.id, rec.duration * self.sb.config.recording_bytes_per_second)
        self.sb.counters["recording_downloads"] += 1

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), CHUNK):
                yield data[i : i + CHUNK]

        headers = {
            "Content-Length": str(len(data)),
            "Content-Disposition": f'inline; filename="{rec.id}.mp3"',
        }
        return StreamingResponse(chunks(), media_type="audio/mpeg", headers=headers)

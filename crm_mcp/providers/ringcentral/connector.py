"""RingCentral connector: the company call log as neutral call sessions, and their recordings.

Quirks handled here, from RingCentral's official OpenAPI description and crm-apis.md §4:
- Auth: the JWT grant (server-to-server apps) or an OAuth refresh token (rotating, single-use),
  client authenticated with HTTP Basic at `/restapi/oauth/token` (see `auth`); access tokens are
  reused for their hour, refreshed single-flight.
- The call log (`GET /restapi/v1.0/account/~/call-log`, Detailed view, voice only) pages with
  `navigation.nextPage.uri`; only its path and query are followed, on the configured host.
- One call to a queue leaves a record (or leg) per member that rang, all with one
  `telephonySessionId`; they are aggregated into ONE `CallSession` (`wire.session_from_records`).
  A session whose records straddle a page boundary is completed with a `telephonySessionId`
  query before the page is returned, and skipped on the next page (the cursor carries its id):
  every session comes out exactly once, whole. (This relies on a session's records being
  listed together, as they share its start time; a session straddling two `since`/`until`
  windows is cut at the window edge.)
- Recordings are downloaded from the media host (`contentUri`, only on the configured media or
  platform host, so the token never goes anywhere else), streamed and refused past a size cap.
- Rate-limit groups (Light / Medium / Heavy / Auth), each learned from its own
  `X-Rate-Limit-*` headers, and the 60 s penalty after a 429 (see `limits`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from crm_mcp.connectors.base import CallLogPage, CallRecording, CallSession
from crm_mcp.connectors.http import ResilientClient, check_base_url
from crm_mcp.connectors.oauth import TokenStore
from crm_mcp.errors import InvalidRequestError, UpstreamUnavailableError

from . import wire
from .auth import RingCentralAuth
from .limits import GroupLimits
from .settings import media_url_for
from .spec import CALL_LOG_PATH, EXTENSION_PATH, MAX_PAGE_SIZE, PAGE_SIZE, RINGCENTRAL_SPEC, TOKEN_PATH

RECONNECT_HINT = (
    "Create a new JWT credential (CRM_MCP_RINGCENTRAL_JWT) or re-authorize the RingCentral app "
    "and set its new refresh token (CRM_MCP_RINGCENTRAL_REFRESH_TOKEN), then retry."
)
DEFAULT_CONTENT_TYPE = "audio/mpeg"


class RingCentralConnector:
    """One RingCentral account's company call log, reached with a JWT credential or an OAuth install.

    Capabilities: call logs.
    """

    provider = "ringcentral"

    def __init__(
        self,
        connection: str,
        *,
        client_id: str,
        client_secret: str,
        jwt: str | None = None,
        refresh_token: str | None = None,
        base_url: str = RINGCENTRAL_SPEC.default_base_url,
        media_url: str | None = None,
        account_id: str = "~",
        page_size: int = PAGE_SIZE,
        default_country_code: str = "1",
        token_store: TokenStore | None = None,
        token_clock: Callable[[], float] = time.time,
        client: ResilientClient | None = None,
        **client_kwargs: Any,
    ) -> None:
        """Raises: ConfigurationError for a URL that is not https/loopback, or missing credentials."""
        self.connection = connection
        self.account = account_id or "~"
        self.base_url = check_base_url(base_url)
        self.media_url = check_base_url(media_url or media_url_for(self.base_url))
        self.page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
        self.country = default_country_code
        self.limits: GroupLimits | None = None
        if client is None:
            auth = RingCentralAuth(
                provider=self.provider,
                connection=connection,
                token_url=f"{self.base_url}{TOKEN_PATH}",
                client_id=client_id,
                client_secret=client_secret,
                jwt=jwt,
                refresh_token=refresh_token,
                store=token_store,
                clock=token_clock,
                reconnect_hint=RECONNECT_HINT,
            )
            if "limiter" not in client_kwargs:
                kw = {k: client_kwargs[k] for k in ("clock", "sleep") if k in client_kwargs}
                self.limits = GroupLimits(**kw)
                client_kwargs["limiter"] = self.limits
            # a 429 costs RingCentral's 60 s penalty: waiting it out beats failing the pull
            client_kwargs.setdefault("max_retry_time_s", 150.0)
            client = ResilientClient(
                RINGCENTRAL_SPEC, connection, base_url=self.base_url, auth=auth, **client_kwargs
            )
        self._client = client
        self._log_path = CALL_LOG_PATH.format(account=self.account)

    @property
    def client(self) -> ResilientClient:
        return self._client

    def _group(self, name: str) -> Any:
        return GroupLimits.group(name)

    async def _get(self, path: str, params: Mapping[str, str] | None = None, group: str = "heavy") -> Any:
        with self._group(group):
            data = await self._client.request_json("GET", path, params=params)
        if not isinstance(data, dict):
            raise UpstreamUnavailableError(
                f"ringcentral GET {path}: the answer is not an object", provider=self.provider
            )
        return data

    async def ping(self) -> None:
        """Who the credentials are (GET extension/~, a Light call)."""
        await self._get(EXTENSION_PATH.format(account=self.account), group="light")

    # -- call log ---------------------------------------------------------------------------
    async def list_calls(self, since: datetime, until: datetime, cursor: str | None) -> CallLogPage:
        """One page of call sessions that started in [since, until), newest first; `next_cursor`
        is opaque and None on the last page. Each session appears once, whole, across pages.

        Raises:
            InvalidRequestError: a cursor this method did not return, or since after until.
        """
        if cursor:
            try:
                params, done = wire.decode_cursor(cursor)
            except ValueError:
                raise InvalidRequestError(
                    f"ringcentral list_calls: {cursor[:40]!r} is not a cursor a page returned",
                    provider=self.provider,
                ) from None
        else:
            if since > until:
                raise InvalidRequestError(
                    "ringcentral list_calls: since is after until", provider=self.provider
                )
            params, done = wire.call_log_params(since, until, self.page_size), []
        body = await self._get(self._log_path, params)
        records = [r for r in body.get("records") or [] if isinstance(r, dict)]
        groups = wire.group_sessions(records)
        for key in done:
            groups.pop(key, None)
        try:
            nxt = wire.next_page(body)
        except ValueError as exc:
            raise UpstreamUnavailableError(f"ringcentral call log: {exc}", provider=self.provider) from None
        carried: list[str] = []
        if nxt is not None and groups:
            last = next(reversed(groups))  # it may go on on the next page: fetch it whole now
            groups[last] = await self._whole_session(last, params) or groups[last]
            carried = [last]
        elif nxt is not None and done:
            carried = done  # a page that held only the rest of a carried session: keep skipping it
        calls = [s for s in (wire.session_from_records(g, self.country) for g in groups.values()) if s]
        next_cursor = wire.encode_cursor(nxt, carried) if nxt is not None else None
        return CallLogPage(calls=calls, next_cursor=next_cursor)

    async def _whole_session(self, key: str, params: Mapping[str, str]) -> list[Mapping[str, Any]]:
        """Every record of one telephony session in the listing's date range."""
        query = {k: v for k, v in params.items() if k in ("dateFrom", "dateTo", "view", "type")}
        query.update({"telephonySessionId": key, "perPage": str(MAX_PAGE_SIZE)})
        body = await self._get(self._log_path, query)
        return [r for r in body.get("records") or [] if isinstance(r, dict) and wire.session_key(r) == key]

    async def get_call(self, session_id: str, since: datetime, until: datetime) -> CallSession | None:
        """One session by telephony session id (its recording's readiness, for a later update)."""
        params = wire.call_log_params(since, until, MAX_PAGE_SIZE)
        records = await self._whole_session(session_id, params)
        return wire.session_from_records(records, self.country) if records else None

    # -- recordings -------------------------------------------------------------------------
    def _media_url(self, recording: CallRecording) -> str:
        """The recording's contentUri, refused unless it is on the configured media or platform host.

        Raises:
            InvalidRequestError: no contentUri, or one on another host.
        """
        uri = recording.content_uri or ""
        parts = urlsplit(uri)
        origin = f"{parts.scheme}://{parts.netloc}"
        if not uri or origin not in (self.media_url, self.base_url):
            raise InvalidRequestError(
                f"ringcentral recording {recording.id}: content URI {uri[:80]!r} is not on {self.media_url}",
                provider=self.provider,
            )
        return uri

    async def download_recording(self, recording: CallRecording, max_bytes: int) -> tuple[bytes, str]:
        """The recording's content from the media host (streamed; never more than `max_bytes` read).

        Raises:
            InvalidRequestError: larger than `max_bytes` (status 413), or a content URI off the media host.
            NotFoundError: RingCentral has no such recording (yet: it serves one once the call ended).
        """
        url = self._media_url(recording)
        with self._group("heavy"):
            response = await self._client.request(
                "GET", url, headers={"Accept": "audio/*"}, max_bytes=max_bytes
            )
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
        return response.content, content_type or recording.content_type or DEFAULT_CONTENT_TYPE

    def snapshot(self) -> dict[str, Any]:
        return self._client.snapshot()

    async def aclose(self) -> None:
        await self._client.aclose()

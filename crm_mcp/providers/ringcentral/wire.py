"""Pure RingCentral wire <-> neutral mapping: call-log records to call sessions, paging cursors.

No I/O. What RingCentral's call log looks like (OAS `CallLogResponse`, `CallLogRecord`; crm-apis §4.2):
records newest first, each with `telephonySessionId`, `direction`, `result`, `startTime`,
`duration`, `from` / `to` parties, `extension`, an optional `recording` and, in the Detailed view,
`legs[]` with the same fields per leg. A call to a queue leaves a record (or leg) per member that
rang, all with one `telephonySessionId`: they become ONE `CallSession` here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from crm_mcp.connectors.base import CallRecording, CallResult, CallSession
from crm_mcp.connectors.phones import to_e164

from .spec import ELSEWHERE_RESULTS, IN_PROGRESS_RESULTS, neutral_result

Record = Mapping[str, Any]


def iso(moment: datetime) -> str:
    """A datetime as RingCentral's query parameters take it: ISO 8601 in UTC with milliseconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def call_log_params(since: datetime, until: datetime, per_page: int) -> dict[str, str]:
    """The first page's query: voice calls in [since, until), with legs, `per_page` per page."""
    return {
        "dateFrom": iso(since),
        "dateTo": iso(until),
        "view": "Detailed",
        "type": "Voice",
        "perPage": str(per_page),
        "page": "1",
    }


# -- paging --------------------------------------------------------------------------------------
def next_page(body: Mapping[str, Any]) -> dict[str, str] | None:
    """The query of `navigation.nextPage.uri` (None on the last page).

    Only the query is kept: the next page is asked of the configured host and account's call
    log, so a forged URI can never send the token elsewhere. A next page that is not a call log
    is refused (ValueError).
    """
    nav = body.get("navigation")
    nxt = nav.get("nextPage") if isinstance(nav, Mapping) else None
    uri = nxt.get("uri") if isinstance(nxt, Mapping) else None
    if not isinstance(uri, str) or not uri:
        return None
    parts = urlsplit(uri)
    if not parts.path.rstrip("/").endswith("/call-log"):
        raise ValueError(f"navigation.nextPage points at {parts.path!r}, not the call log")
    return dict(parse_qsl(parts.query, keep_blank_values=True))


def encode_cursor(params: Mapping[str, str], done: Sequence[str]) -> str:
    """An opaque cursor: the next page's query and the sessions already returned whole."""
    raw = json.dumps({"q": dict(params), "d": list(done)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dict[str, str], list[str]]:
    """Raises: ValueError for a cursor this module did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        params, done = data["q"], data["d"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError("not a call-log cursor") from None
    if not isinstance(params, dict) or not isinstance(done, list):
        raise ValueError("not a call-log cursor")
    return {str(k): str(v) for k, v in params.items()}, [str(d) for d in done]


# -- sessions ------------------------------------------------------------------------------------
def session_key(record: Record) -> str:
    """What ties the records and legs of one call: the telephony session (else the session)."""
    for key in ("telephonySessionId", "sessionId", "id"):
        value = record.get(key)
        if value:
            return str(value)
    return ""


def group_sessions(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Records by session, in the order each session first appears."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        if record.get("deleted") or record.get("type", "Voice") != "Voice":
            continue
        groups.setdefault(session_key(record), []).append(record)
    return groups


def _party(item: Record, side: str) -> Mapping[str, Any]:
    party = item.get(side)
    return party if isinstance(party, Mapping) else {}


def _items(records: Sequence[Record]) -> list[Record]:
    """Every record, then every leg: what rang, who answered, where it went."""
    legs = [leg for r in records for leg in (r.get("legs") or []) if isinstance(leg, Mapping)]
    return [*records, *legs]


def _extension(item: Record, direction: str) -> str | None:
    """The internal extension of a record or leg: its short number, else the extension id."""
    party = _party(item, "to" if direction == "inbound" else "from")
    number = party.get("extensionNumber")
    if number:
        return str(number)
    ext = item.get("extension")
    if isinstance(ext, Mapping) and ext.get("id") is not None:
        return str(ext["id"])
    return None


def _result_of(items: Sequence[Record]) -> tuple[CallResult, Record | None]:
    """answered if any leg answered (the answering one), voicemail if it reached voicemail, else missed."""
    answered = [i for i in items if neutral_result(i.get("result")) == "answered"]
    here = [i for i in answered if i.get("result") not in ELSEWHERE_RESULTS]
    if answered:
        return "answered", (here or answered)[0]
    voicemail = [i for i in items if neutral_result(i.get("result")) == "voicemail"]
    if voicemail:
        return "voicemail", voicemail[0]
    return "missed", None


def _recording(items: Sequence[Record], preferred: Record | None) -> CallRecording | None:
    ordered = [preferred, *items] if preferred is not None else list(items)
    for item in ordered:
        rec = item.get("recording") if item is not None else None
        if isinstance(rec, Mapping) and rec.get("id"):
            # RingCentral serves a recording only once the call has concluded: a record that says
            # `finished: false` has a recording that is not retrievable yet (logged now, updated later)
            return CallRecording(
                id=str(rec["id"]),
                content_uri=rec.get("contentUri"),
                content_type=rec.get("contentType"),
                duration_seconds=rec.get("duration") if isinstance(rec.get("duration"), int) else None,
                ready=item.get("finished") is not False,
            )
    return None


def session_from_records(records: Sequence[Record], default_country_code: str = "1") -> CallSession | None:
    """ONE neutral call session from every record of one telephony session (None while the call
    is still in progress: it is logged once it has an outcome)."""
    if not records:
        return None
    if all(r.get("result") in IN_PROGRESS_RESULTS for r in records):
        return None
    items = _items(records)
    first = records[0]
    direction = "outbound" if str(first.get("direction", "")).lower() == "outbound" else "inbound"
    result, handler = _result_of(items)
    if handler is None:
        dialed = {e for e in (_extension(r, direction) for r in records) if e}
        extension = dialed.pop() if len(dialed) == 1 else None
        duration = max((int(r.get("duration") or 0) for r in records), default=0)
    else:
        extension = _extension(handler, direction)
        duration = int(handler.get("duration") or 0)
    starts = [t for t in (parse_time(r.get("startTime")) for r in records) if t is not None]
    if not starts:
        return None
    source = next((r for r in records if _party(r, "from").get("phoneNumber")), first)
    target = next((r for r in records if _party(r, "to").get("phoneNumber")), first)
    frm, to = _party(source, "from"), _party(target, "to")
    return CallSession(
        id=session_key(first),
        direction=direction,
        result=result,
        started_at=min(starts),
        duration_seconds=duration,
        from_number=to_e164(frm.get("phoneNumber"), default_country_code=default_country_code),
        from_name=frm.get("name"),
        to_number=to_e164(to.get("phoneNumber"), default_country_code=default_country_code),
        to_name=to.get("name"),
        extension=extension,
        recording=_recording(items, handler),
    )

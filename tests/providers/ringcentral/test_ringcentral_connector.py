"""The RingCentral connector against its simulator over loopback HTTP, on one virtual clock:
call-log paging into whole sessions, recordings (streamed, capped, not ready yet), the JWT and
refresh grants, the rate-limit groups and the 429 penalty."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import anyio
import pytest

from crm_mcp.connectors.base import CallLogs, CallRecording, CallSession, capabilities_of
from crm_mcp.connectors.oauth import MemoryTokenStore
from crm_mcp.errors import AuthError, InvalidRequestError, NotFoundError
from crm_mcp.providers.ringcentral.connector import RingCentralConnector
from crm_mcp.providers.ringcentral.sandbox import SANDBOX_REFRESH_TOKEN, RingCentralSandbox
from tests.providers.ringcentral.support import connector
from tests.providers.support import FakeTime

pytestmark = pytest.mark.anyio


async def all_calls(
    conn: RingCentralConnector, fake: FakeTime, days: int = 4
) -> tuple[list[CallSession], int]:
    now = anyio_now(fake)
    calls: list[CallSession] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await conn.list_calls(now - timedelta(days=days), now + timedelta(seconds=1), cursor)
        pages += 1
        calls += page.calls
        cursor = page.next_cursor
        if cursor is None or pages > 200:
            return calls, pages


def anyio_now(fake: FakeTime) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(fake.wall(), UTC)


async def test_it_has_the_call_logs_capability_only(url: str, fake: FakeTime) -> None:
    conn = connector(url, fake)
    assert capabilities_of(conn) == frozenset({"call_logs"}) and isinstance(conn, CallLogs)
    await conn.aclose()


async def test_small_pages_still_give_every_session_once_and_whole(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    sandbox.set_limits(all=10_000)
    conn = connector(url, fake, page_size=4)
    calls, pages = await all_calls(conn, fake)
    await conn.aclose()
    ids = [c.id for c in calls]
    assert pages >= 10 and len(ids) == len(set(ids)) == len(sandbox.calls)
    by_id = {c.telephony_session_id: c for c in sandbox.calls}
    for call in calls:  # one session per call, with the outcome of the call, not of a leg
        sim = by_id[call.id]
        expected = (
            "answered" if sim.answered else ("voicemail" if sim.kind.endswith("voicemail") else "missed")
        )
        assert call.result == expected, (sim.kind, [leg.result for leg in sim.legs])
    queued = [c for c in sandbox.calls if c.kind.startswith("queue")]
    assert queued and all(len(c.legs) >= 2 for c in queued)  # several records each, one session each
    assert all(c.from_number is None or c.from_number.startswith("+") for c in calls)
    repeat = Counter(c.from_number for c in calls if c.direction == "inbound")
    assert max(repeat.values()) >= 2  # repeat callers come back with the same E.164 number


async def test_a_session_split_across_pages_is_completed_once(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    sandbox.set_limits(all=10_000)
    big = max(sandbox.calls, key=lambda c: len(c.legs))
    assert len(big.legs) >= 3
    conn = connector(url, fake, page_size=len(big.legs) - 1)  # no page can hold it whole
    calls, _ = await all_calls(conn, fake)
    await conn.aclose()
    found = [c for c in calls if c.id == big.telephony_session_id]
    assert len(found) == 1
    voicemail = any(leg.result == "Voicemail" for leg in big.legs)
    assert found[0].result == ("answered" if big.answered else "voicemail" if voicemail else "missed")
    taker = [leg.ext[0] for leg in big.legs if leg.result == "Accepted"]
    assert found[0].extension == (taker[0] if taker else ("800" if voicemail else None))
    if taker:
        assert found[0].duration_seconds == next(leg.duration for leg in big.legs if leg.result == "Accepted")


async def test_the_jwt_grant_is_made_once_and_the_token_reused_until_it_expires(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    conn = connector(url, fake)
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(conn.ping)
    await conn.ping()
    assert sandbox.oauth.grants["jwt"] == 1
    fake.now += 3600  # the hour is over (on the token clock and the simulator's)
    await conn.ping()
    assert sandbox.oauth.grants["jwt"] == 2 and sandbox.oauth.grants["refused"] == 0
    await conn.aclose()


async def test_refresh_tokens_rotate_and_the_new_one_is_persisted(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    store = MemoryTokenStore()
    conn = connector(url, fake, oauth=True, token_store=store)
    await conn.ping()
    first = store.saved[("ringcentral", "rc")]["refresh_token"]
    assert first != SANDBOX_REFRESH_TOKEN  # single use: a new one came back and was saved
    sandbox.oauth.expire_access_tokens()
    await conn.ping()  # 401 -> one refresh with the rotated token
    second = store.saved[("ringcentral", "rc")]["refresh_token"]
    assert second != first and sandbox.oauth.grants["refresh_token"] == 2
    await conn.aclose()
    again = connector(url, fake, oauth=True, token_store=store)  # a restart reads the stored chain
    fake.now += 7200
    await again.ping()
    assert sandbox.oauth.grants["refused"] == 0
    await again.aclose()


async def test_a_wrong_client_secret_is_an_auth_error_that_never_shows_it(url: str, fake: FakeTime) -> None:
    conn = RingCentralConnector(
        "rc", client_id="x", client_secret="canary-secret-123456", jwt="j" * 20, base_url=url,
        clock=fake.clock, sleep=fake.sleep,
    )  # fmt: skip
    with pytest.raises(AuthError) as refused:
        await conn.ping()
    assert "canary-secret-123456" not in str(refused.value) and not refused.value.retryable
    await conn.aclose()


async def test_heavy_calls_pace_themselves_in_their_group_without_a_429(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    sandbox.set_limits(heavy=3)
    conn = connector(url, fake, page_size=5)
    now = anyio_now(fake)
    for _ in range(7):
        await conn.list_calls(now - timedelta(days=3), now, None)
    for _ in range(20):  # Light calls do not spend the Heavy window
        await conn.ping()
    snap = conn.snapshot()["limiter"]["groups"]
    await conn.aclose()
    assert sandbox.stats["rate_limited"] == 0  # learned the limit of 3 and waited instead
    assert snap["heavy"]["limit"] == 3 and snap["light"]["limit"] == 50
    assert sum(fake.sleeps) >= 60


async def test_a_429_waits_out_the_penalty_without_sending_during_it(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    sandbox.set_limits(heavy=2)
    other = connector(url, fake)  # another client of the same app spends the Heavy window
    now = anyio_now(fake)
    for _ in range(2):
        await other.list_calls(now - timedelta(days=3), now, None)
    conn = connector(url, fake)
    page = await conn.list_calls(now - timedelta(days=3), now, None)  # 429, Retry-After 60, then ok
    await conn.aclose()
    await other.aclose()
    assert page.calls and sandbox.stats["rate_limited"] == 1
    assert 60 <= sum(fake.sleeps) < 120
    assert sandbox.stats["sent_during_penalty"] == 0  # an early retry would have restarted it


async def test_a_429_without_retry_after_pauses_its_group_for_the_60_s_penalty(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    conn = connector(url, fake)
    await conn.ping()
    sandbox.faults.set("rate_limit", count=1, path="call-log")
    now = anyio_now(fake)
    page = await conn.list_calls(now - timedelta(days=3), now, None)
    groups = conn.snapshot()["limiter"]["groups"]
    await conn.aclose()
    assert page.calls and sum(fake.sleeps) >= 60
    assert groups["light"]["waits"] == 0  # only the Heavy group paused


async def test_recordings_download_streamed_with_a_size_cap(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    conn = connector(url, fake)
    calls, _ = await all_calls(conn, fake)
    recordings = [c.recording for c in calls if c.recording is not None]
    ready = [r for r in recordings if r.ready]
    pending = [r for r in recordings if not r.ready]
    assert ready and len(pending) == 2
    rec = max(ready, key=lambda r: sandbox.recording(r.id).duration)
    size = sandbox.recording(rec.id).duration * sandbox.config.recording_bytes_per_second
    content, ctype = await conn.download_recording(rec, size)
    assert (len(content), ctype, content[:3]) == (size, "audio/mpeg", b"ID3")
    sandbox.oauth.expire_access_tokens()  # a 401 on the media host: one new grant, then the stream
    assert len((await conn.download_recording(rec, size))[0]) == size
    assert sandbox.oauth.grants["jwt"] == 2
    with pytest.raises(InvalidRequestError) as too_big:
        await conn.download_recording(rec, size - 1)
    assert too_big.value.status == 413 and not too_big.value.retryable
    with pytest.raises(NotFoundError):  # still processing: RingCentral has nothing to serve yet
        await conn.download_recording(pending[0], size)
    sandbox.release_recordings()
    calls, _ = await all_calls(conn, fake)
    assert all(c.recording.ready for c in calls if c.recording is not None)
    await conn.aclose()


async def test_a_content_uri_off_the_media_host_is_refused_before_any_request(
    url: str, fake: FakeTime, sandbox: RingCentralSandbox
) -> None:
    conn = connector(url, fake)
    foreign = CallRecording(
        id="1", content_uri="https://attacker.example/restapi/v1.0/account/1/recording/1/content"
    )
    with pytest.raises(InvalidRequestError):
        await conn.download_recording(foreign, 10_000)
    assert sandbox.oauth.grants["jwt"] == 0  # not even a token was fetched
    await conn.aclose()


async def test_a_cursor_it_did_not_make_is_refused(url: str, fake: FakeTime) -> None:
    conn = connector(url, fake)
    now = anyio_now(fake)
    with pytest.raises(InvalidRequestError):
        await conn.list_calls(now, now, "bogus")
    await conn.aclose()

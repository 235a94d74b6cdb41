"""The call-log pull: pages of a telephony connection's call log turned into outbox commands.

Each page becomes, in ONE write transaction: a `call_logs` row per new session (unique per
telephony session, so a session is queued once however often its window is pulled), a
`CallsPage` command per CALLS_PER_COMMAND of them to the target CRM connection, and the pull's
checkpoint (`call_pulls`: the
window and the next page's cursor). A pull killed at any point resumes at the first page it did
not queue; re-reading a page it did queue costs reads and writes nothing.

The scheduled pull (inside the worker, every `CRM_MCP_CALLS_INTERVAL`) reads from its high-water
mark, less an overlap that catches calls the phone system logs late, or from the oldest call still
waiting for its recording, up to now less `CRM_MCP_CALLS_SETTLE_SECONDS`. `sync_call_logs` runs
the same pull over the window it is given.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, overload

from sqlalchemy import select, update

from crm_mcp.connectors.base import CallLogs, CallSession
from crm_mcp.connectors.phones import to_e164
from crm_mcp.errors import ConfigurationError, CRMError
from crm_mcp.scope import current_principal
from crm_mcp.state.models import CallLog, CallPull
from crm_mcp.sync.calls import (
    CallPolicy,
    CallRecordingUpdate,
    CallsPage,
    external_number,
    lookup,
    pick,
    wants_lead,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from crm_mcp.connectors.base import C, Connector
    from crm_mcp.settings import ConnectionSettings, Settings
    from crm_mcp.state.db import Database

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=15)
# calls per outbox command: a telephony page (up to 1,000) is split so that deliveries run side by
# side, a failure holds back few calls, and progress shows call by call batches
CALLS_PER_COMMAND = 50
PENDING_RECORDINGS_FOR = timedelta(hours=24)
Progress = Callable[[int, str], Awaitable[None]]


class Runtime(Protocol):
    """What the pipeline needs of its host (`crm_mcp.runtime.Runtime` is one): the settings, the
    clock, the database, the connections and their connectors."""

    settings: Settings
    clock: Callable[[], datetime]

    async def database(self) -> Database: ...
    def connection(self, name: str | None = None, needs: str | None = None) -> ConnectionSettings: ...
    @overload
    def connector(self, name: str | None = None) -> Connector: ...
    @overload
    def connector(self, name: str | None, needs: type[C]) -> C: ...
    def touch(self) -> None: ...


@dataclass
class PullResult:
    """What one pull saw and queued (or, on a dry run, would write)."""

    source: str
    target: str
    since: datetime
    until: datetime
    pages: int = 0
    seen: int = 0
    queued: int = 0
    already_logged: int = 0
    blocked: int = 0
    recordings_queued: int = 0
    operations: list[str] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"], out["until"] = self.since.isoformat(), self.until.isoformat()
        return out


def policy_from(settings: Settings) -> CallPolicy:
    return CallPolicy(
        match=settings.calls_match,
        create=settings.calls_create_leads,
        owners=settings.calls_owners,
        fallback_owner=settings.calls_fallback_owner,
        missed_task=settings.calls_missed_task,
        max_recording_bytes=int(settings.calls_max_recording_mb * 1024 * 1024),
    )


def _if(name: str | None, visible: Callable[[str], bool]) -> str | None:
    return name if name and visible(name) else None


def endpoints(rt: Runtime, source: str | None = None, target: str | None = None) -> tuple[str, str]:
    """The telephony connection and the CRM connection the pipeline joins. The CRM is the one
    named (`target`, CRM_MCP_CALLS_TARGET), else the default connection where it has call
    activities, else the only connection that has them. Never a guess among several: calls
    logged on the wrong CRM cannot be taken back.

    Raises:
        ConfigurationError: none or several of either, with what to set.
    """
    s = rt.settings
    mine = current_principal().may_use  # a tenant's call never names the operator's defaults
    src = rt.connection(source or _if(s.calls_source, mine), needs="call_logs").name
    name = target or _if(s.calls_target, mine)
    if name:
        return src, rt.connection(name, needs="notes").name
    default = _if(s.default_connection, mine)
    if default and "call_activities" in capabilities(rt, default):
        return src, default
    try:
        return src, rt.connection(None, needs="call_activities").name
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"The call-log pipeline needs to know which CRM to log calls on ({exc.message}). "
            "Pass `target` to sync_call_logs, or set CRM_MCP_CALLS_TARGET to its name."
        ) from None


def capabilities(rt: Runtime, name: str) -> frozenset[str]:
    from crm_mcp.connectors.registry import get_provider

    return get_provider(rt.connection(name).provider).capabilities


def blocklist(entries: list[str]) -> frozenset[str]:
    """The blocklist's numbers in E.164 (extensions as given), normalised once per pull."""
    return frozenset(to_e164(b) or b for b in entries)


def is_blocked(call: CallSession, blocked: frozenset[str]) -> bool:
    return bool(blocked & {external_number(call), call.extension})


def _page_id(source: str, calls: list[CallSession]) -> str:
    digest = hashlib.sha256("\n".join(sorted(c.id for c in calls)).encode()).hexdigest()[:24]
    return f"{source}:{digest}"


async def _window(rt: Runtime, source: str, now: datetime) -> tuple[datetime, datetime, str | None]:
    """The scheduled pull's window and the cursor to resume at."""
    db = await rt.database()
    async with db.sessions() as session:
        state = await session.get(CallPull, source)
        oldest_pending = (
            await session.execute(
                select(CallLog.started_at)
                .where(
                    CallLog.source == source,
                    CallLog.recording == "pending",
                    CallLog.started_at >= now - PENDING_RECORDINGS_FOR,
                )
                .order_by(CallLog.started_at)
                .limit(1)
            )
        ).scalar_one_or_none()
    if state is not None and state.cursor and state.window_start and state.window_end:
        return state.window_start, state.window_end, state.cursor
    end = now - timedelta(seconds=rt.settings.calls_settle_seconds)
    if state is not None and state.high_water is not None:
        start = state.high_water - OVERLAP
    else:
        start = now - timedelta(hours=rt.settings.calls_lookback_hours)
    if oldest_pending is not None:
        start = min(start, oldest_pending)
    return start, max(start, end), None


async def pull_calls(
    rt: Runtime,
    *,
    source: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> PullResult:
    """Pull the call log and queue what is new (see the module doc). With no `since` this is the
    scheduled pull, checkpointed in `call_pulls`; with one, a window of the caller's choosing.

    Raises:
        ConfigurationError: the pipeline's connections are not configured.
        CRMError: the telephony connection failed (pages queued before it stay queued).
    """
    src, tgt = endpoints(rt, source, target)
    telephony = rt.connector(src, CallLogs)
    policy = policy_from(rt.settings)
    now = rt.clock()
    scheduled = since is None
    if scheduled:
        start, end, cursor = await _window(rt, src, now)
    else:
        assert since is not None
        start, end, cursor = since, until or now, None
    result = PullResult(source=src, target=tgt, since=start, until=end)
    blocked = blocklist(rt.settings.calls_blocklist)
    db = await rt.database()
    while True:
        page = await telephony.list_calls(start, end, cursor)
        result.pages += 1
        result.seen += len(page.calls)
        calls = [c for c in page.calls if not is_blocked(c, blocked)]
        result.blocked += len(page.calls) - len(calls)
        async with db.sessions() as session:
            known = {
                row.session_id: row
                for row in (
                    await session.execute(
                        select(CallLog).where(
                            CallLog.source == src, CallLog.session_id.in_([c.id for c in calls])
                        )
                    )
                ).scalars()
            }
        new = [c for c in calls if c.id not in known]
        ready = [  # recordings now ready whose log can be updated in place (a call activity)
            c
            for c in calls
            if (row := known.get(c.id)) is not None
            and row.recording == "pending"
            and c.recording is not None
            and c.recording.ready
            and "call_activities" in capabilities(rt, row.target)
        ]
        result.already_logged += len(calls) - len(new)
        if dry_run:
            result.plan += await _plan(rt, tgt, policy, new)
        else:
            ops, queued = await _queue_page(
                rt, _Page(src, tgt, policy, new, ready, known, start, end, page.next_cursor, scheduled)
            )
            result.operations += ops
            result.queued += queued
            result.already_logged += len(new) - queued
            result.recordings_queued += len(ready)
        if progress is not None:
            await progress(result.pages, f"page {result.pages}: {len(page.calls)} calls, {len(new)} new")
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    if scheduled and not dry_run:
        await _finish(rt, src, end, now, result)
    return result


async def _plan(
    rt: Runtime, target: str, policy: CallPolicy, calls: list[CallSession]
) -> list[dict[str, Any]]:
    """What a page would write, read-only: per call, the records it would go on."""
    crm = rt.connector(target)
    found: dict[str, list[str]] = {}
    out = []
    for call in calls:
        number = external_number(call)
        if number and number not in found:
            found[number] = [c.id for c in await lookup(crm, number) if c.id]
        ids = found.get(number or "", [])
        contacts, match = pick([{"id": i} for i in ids], policy.match)
        if contacts:
            action = "log on " + ", ".join(contacts)
        elif wants_lead([call], policy.create):
            action = "create a lead, then log"
        else:
            action = "skip (no record, no lead by rule)"
        out.append(
            {
                "call": call.id,
                "number": number,
                "direction": call.direction,
                "result": call.result,
                "started_at": call.started_at.isoformat(),
                "would": action,
                "match": match,
                "recording": "none"
                if call.recording is None
                else ("ready" if call.recording.ready else "pending"),
                "task": policy.wants_task(call),
            }
        )
    return out


@dataclass
class _Page:
    """One page of the call log to queue, and where the pull stands after it."""

    source: str
    target: str
    policy: CallPolicy
    new: list[CallSession]
    ready: list[CallSession]
    known: dict[str, CallLog]
    start: datetime
    end: datetime
    next_cursor: str | None
    scheduled: bool


async def _queue_page(rt: Runtime, page: _Page) -> tuple[list[str], int]:
    """Queue one page in one transaction; (operation ids, calls queued). Another pull may have
    queued some of the calls meanwhile (the schedule and the tool, or two workers): those are
    left out, and a unique-key race with a pull committing at the same moment is retried."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):
        try:
            return await _queue_page_once(rt, page)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _queue_page_once(rt: Runtime, page: _Page) -> tuple[list[str], int]:
    from crm_mcp.sync.commands import queue

    source, target, policy, new = page.source, page.target, page.policy, page.new

    db = await rt.database()
    now = rt.clock()
    deadline = timedelta(seconds=rt.settings.sync_deadline_seconds)
    ops: list[str] = []
    async with db.begin_write() as session:
        taken = set(
            (
                await session.execute(
                    select(CallLog.session_id).where(
                        CallLog.source == source, CallLog.session_id.in_([c.id for c in new])
                    )
                )
            ).scalars()
        )
        new = [c for c in new if c.id not in taken]
        for first in range(0, len(new), CALLS_PER_COMMAND):
            chunk = new[first : first + CALLS_PER_COMMAND]
            cmd = CallsPage(page_id=_page_id(source, chunk), source=source, calls=chunk, policy=policy)
            op, _created = await queue(
                session,
                cmd,
                key=f"calls:{cmd.page_id}",
                connection=target,
                now=now,
                deadline=deadline,
                fresh=True,  # its sessions are new in this transaction: nothing of them is in the CRM
            )
            ops.append(op.id)
            for call in chunk:
                session.add(
                    CallLog(
                        source=source,
                        session_id=call.id,
                        target=target,
                        operation_id=op.id,
                        started_at=call.started_at,
                        direction=call.direction,
                        result=call.result,
                        number=external_number(call),
                        extension=call.extension,
                        status="queued",
                        recording="none" if call.recording is None else "queued",
                        detail={},
                    )
                )
        for call in page.ready:
            row = page.known[call.id]
            detail = row.detail or {}
            rec = CallRecordingUpdate(
                source=source,
                call=call,
                contacts=list(detail.get("contacts") or []),
                activities=dict(detail.get("activities") or {}),
                policy=policy,
            )
            if not rec.contacts:
                continue
            op, _created = await queue(
                session,
                rec,
                key=f"calls-rec:{source}:{call.id}",
                connection=row.target,
                now=now,
                deadline=deadline,
                fresh=True,  # queued once per session: no attempt has attached it yet
            )
            ops.append(op.id)
            await session.execute(
                update(CallLog).where(CallLog.id == row.id).values(recording="queued", updated_at=now)
            )
        if page.scheduled:
            state = await session.get(CallPull, source)
            if state is None:
                state = CallPull(source=source, counts={})
                session.add(state)
            state.window_start, state.window_end, state.cursor = page.start, page.end, page.next_cursor
    rt.touch()
    return ops, len(new)


async def _finish(rt: Runtime, source: str, end: datetime, now: datetime, result: PullResult) -> None:
    db = await rt.database()
    async with db.begin_write() as session:
        state = await session.get(CallPull, source)
        if state is None:
            state = CallPull(source=source, counts={})
            session.add(state)
        state.high_water = max(end, state.high_water or end)
        state.window_start = state.window_end = state.cursor = None
        state.last_run_at, state.last_error = now, None
        state.counts = {k: v for k, v in result.as_dict().items() if isinstance(v, int)}


async def _failed(rt: Runtime, source: str, now: datetime, error: str) -> None:
    db = await rt.database()
    async with db.begin_write() as session:
        state = await session.get(CallPull, source)
        if state is None:
            state = CallPull(source=source, counts={})
            session.add(state)
        state.last_run_at, state.last_error = now, error[:2000]


def known_numbers(conn: Connection, target: str, numbers: list[str]) -> dict[str, list[str]]:
    """The records earlier calls of these numbers were logged on in `target` (local, no CRM call):
    a repeat caller is matched once, not on every call."""
    rows = conn.execute(
        select(CallLog.number, CallLog.detail)
        .where(CallLog.target == target, CallLog.status == "logged", CallLog.number.in_(numbers))
        .order_by(CallLog.id.desc())
    ).all()
    out: dict[str, list[str]] = {}
    for number, detail in rows:
        if number not in out and (detail or {}).get("contacts"):
            out[number] = list(detail["contacts"])
    return out


async def remembered(db: Database, target: str, numbers: list[str]) -> dict[str, list[str]]:
    """`known_numbers` from the database (what the handler asks before it looks a number up)."""
    async with db.sessions() as session:
        conn = await session.connection()
        return await conn.run_sync(lambda c: known_numbers(c, target, numbers))


def record_outcome(conn: Connection, source: str, session_id: str, outcome: dict[str, Any]) -> None:
    """Store a delivered call's outcome on its `call_logs` row (in the delivery's success write)."""
    row = conn.execute(
        select(CallLog.detail).where(CallLog.source == source, CallLog.session_id == session_id)
    ).first()
    detail = {**(row[0] if row and row[0] else {}), **{k: v for k, v in outcome.items() if k != "status"}}
    values: dict[str, Any] = {"detail": detail}
    if "status" in outcome:
        values["status"] = outcome["status"]
    if "recording" in outcome:
        values["recording"] = outcome["recording"]
    conn.execute(
        update(CallLog).where(CallLog.source == source, CallLog.session_id == session_id).values(**values)
    )


async def queued_calls(rt: Runtime, source: str, operations: list[str]) -> list[CallLog]:
    """The `call_logs` rows these operations deliver (what a run reports once they are done)."""
    if not operations:
        return []
    db = await rt.database()
    async with db.sessions() as session:
        query = select(CallLog).where(CallLog.source == source, CallLog.operation_id.in_(operations))
        return list((await session.execute(query)).scalars())


def pipeline_configured(rt: Runtime) -> bool:
    try:
        endpoints(rt)
    except CRMError:
        return False
    return True


async def run_calls_loop(rt: Runtime, stop: asyncio.Event | None = None) -> None:
    """The scheduled pull, inside the worker: every `CRM_MCP_CALLS_INTERVAL` while a telephony
    connection and a CRM to log on are configured. A failed pull is recorded (status shows it)
    and tried again at the next interval; the pages it queued stay queued."""
    interval = rt.settings.calls_interval
    if interval <= 0 or not pipeline_configured(rt):
        return
    while stop is None or not stop.is_set():
        src = rt.connection(rt.settings.calls_source, needs="call_logs").name
        try:
            result = await pull_calls(rt)
            if result.queued or result.recordings_queued:
                log.info("call-log pull: %d new calls queued from %s", result.queued, src)
        except CRMError as exc:
            log.warning("call-log pull from %s failed: %s", src, exc)
            await _failed(rt, src, rt.clock(), str(exc))
        except Exception as exc:
            log.exception("call-log pull from %s crashed", src)
            await _failed(rt, src, rt.clock(), f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval)


async def pipeline_status(rt: Runtime) -> list[dict[str, Any]]:
    """Per telephony connection: the last run, its checkpoint, the lag behind the phone system,
    and the calls by state (what sync://status and check_integration_health show)."""
    from sqlalchemy import func

    db = await rt.database()
    now = rt.clock()
    out = []
    async with db.sessions() as session:
        pulls = {p.source: p for p in (await session.execute(select(CallPull))).scalars()}
        counts = (
            await session.execute(
                select(CallLog.source, CallLog.status, func.count()).group_by(CallLog.source, CallLog.status)
            )
        ).all()
    by_source: dict[str, dict[str, int]] = {}
    for source, status, n in counts:
        by_source.setdefault(source, {})[status] = n
    for source in sorted(set(pulls) | set(by_source)):
        p = pulls.get(source)
        out.append(
            {
                "source": source,
                "last_run_at": p.last_run_at.isoformat() if p and p.last_run_at else None,
                "last_error": p.last_error if p else None,
                "checkpoint": p.high_water.isoformat() if p and p.high_water else None,
                "resume_cursor": bool(p and p.cursor),
                "lag_seconds": round((now - p.high_water).total_seconds()) if p and p.high_water else None,
                "calls": by_source.get(source, {}),
            }
        )
    return out

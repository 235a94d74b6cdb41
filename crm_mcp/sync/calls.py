"""The call-log pipeline's delivery: one page of telephony call sessions logged on a CRM.

A pull (`crm_mcp.sync.call_pull`) turns each page of the telephony connection's call log into ONE
outbox command, `CallsPage`, keyed to the page and queued in the transaction that records its
sessions in `call_logs` (unique per telephony session: a session is queued once however often its
window is pulled). The command goes to the target CRM connection; its handler, per page:

1. finds each caller's record: the one earlier calls of the number were logged on (local, no
   CRM call), else a lookup (read-only: `PhoneLookup` where the CRM has it, else a search
   compared in E.164), once per number;
2. creates the leads the configured rule asks for, in batches where the CRM has `Batch`;
3. per session: picks the contacts by the match policy, attaches the recording where the CRM has
   `Attachments` (the telephony provider deletes its recordings after 90 days, so a link alone goes
   dead), logs the call as the CRM's call activity (`CallActivities`) or else a note, and for a
   missed inbound call adds one follow-up task.

Every step is checkpointed; after an attempt that may have written unrecorded, each create first
looks for what it would create (the call by its session id, the attachment by its file name, the
note and task by their markers), so a kill -9 between a CRM write and its bookkeeping never logs
a call twice. A recording that is not ready yet is logged as pending; a later pull that finds it
ready queues `CallRecordingUpdate`, which attaches it and updates the same log.

Every CRM gets the same facts from one composer (`compose`), in its own place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_mcp.connectors.base import (
    Attachments,
    Batch,
    CallActivities,
    CallActivity,
    CallLogs,
    CallSession,
    Connector,
    Contact,
    Contacts,
    Notes,
    PhoneLookup,
    Tasks,
    require,
)
from crm_mcp.connectors.phones import to_e164
from crm_mcp.errors import InvalidRequestError, NotFoundError
from crm_mcp.sync.actions import find_or_create_note, find_or_create_task, marker
from crm_mcp.sync.commands import Command, Short

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from crm_mcp.state.models import SyncOperation

log = logging.getLogger(__name__)

MatchPolicy = Literal["last_updated", "earliest_created", "all"]
CreateRule = Literal["always", "inbound", "never"]


class CallPolicy(BaseModel):
    """How calls become CRM records; snapshotted into each page so a delivery after a settings
    change does what the pull decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: MatchPolicy = "last_updated"
    create: CreateRule = "always"
    owners: dict[str, str] = Field(default_factory=dict, max_length=1000)
    fallback_owner: Short | None = None
    missed_task: bool = True
    max_recording_bytes: int = Field(25 * 1024 * 1024, ge=0)

    def owner_for(self, call: CallSession) -> str | None:
        return self.owners.get(call.extension or "", self.fallback_owner)

    def wants_task(self, call: CallSession) -> bool:
        """A follow-up task for a missed (or voicemail) inbound call."""
        return self.missed_task and call.direction == "inbound" and call.result != "answered"


class CallsPage(Command):
    """One page of call sessions from `source` (a telephony connection) to log on this
    operation's connection (a CRM)."""

    action = "calls.log"
    entity_type = "call_page"

    page_id: Short
    source: Short
    calls: list[CallSession] = Field(max_length=1000)
    policy: CallPolicy

    def entity_id(self) -> str:
        return self.page_id


class CallRecordingUpdate(Command):
    """A recording that was not ready when its call was logged: attach it and update that log."""

    action = "calls.recording"
    entity_type = "call"

    source: Short
    call: CallSession
    contacts: list[Short] = Field(max_length=50)
    activities: dict[str, str] = Field(default_factory=dict)  # contact id -> call activity id
    policy: CallPolicy

    def entity_id(self) -> str:
        return f"{self.source}:{self.call.id}"


# -- the composer --------------------------------------------------------------------------------
_RESULT_WORDS = {"answered": "Answered", "missed": "Missed", "voicemail": "Voicemail"}


def external_number(call: CallSession) -> str | None:
    """The other party's number in E.164: the caller of an inbound call, the callee of an outbound."""
    return to_e164(call.from_number if call.direction == "inbound" else call.to_number)


def _duration(seconds: int) -> str:
    minutes, secs = divmod(max(0, seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def subject(call: CallSession) -> str:
    who = (call.from_name if call.direction == "inbound" else call.to_name) or external_number(call)
    verb = {"answered": "call", "missed": "missed call", "voicemail": "voicemail"}[call.result]
    return f"{call.direction.capitalize()} {verb} {'from' if call.direction == 'inbound' else 'to'} {who}"


def compose(call: CallSession, *, recording: str, match: str | None = None) -> str:
    """The facts of a call, the same for every CRM: direction, result, duration, from, to,
    extension, time, the recording (what became of it), and how the record was chosen."""
    lines = [
        f"Direction: {call.direction}",
        f"Result: {_RESULT_WORDS[call.result]}",
        f"Duration: {_duration(call.duration_seconds)}",
        f"From: {_party(call.from_number, call.from_name)}",
        f"To: {_party(call.to_number, call.to_name)}",
        f"Extension: {call.extension or '-'}",
        f"Time: {call.started_at.isoformat()}",
        f"Recording: {recording}",
    ]
    if match:
        lines.append(f"Matched: {match}")
    lines.append(f"Call session: {call.id}")
    return "\n".join(lines)


def _party(number: str | None, name: str | None) -> str:
    shown = to_e164(number) or number or "unknown"
    return f"{name} ({shown})" if name else shown


# the recording formats phone systems serve (an explicit map: mimetypes depends on the host's files)
_AUDIO = {
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/ogg": ".ogg",
}


def recording_filename(call: CallSession, content_type: str | None) -> str:
    ext = _AUDIO.get((content_type or "").split(";")[0].strip().lower(), ".mp3")
    return f"call-{call.id}{ext}"


# -- record choice (pure) --------------------------------------------------------------------------
def pick(candidates: Sequence[dict[str, Any]], policy: MatchPolicy) -> tuple[list[str], str]:
    """The contacts a call is logged on, and the choice in words (recorded with the log)."""
    if not candidates:
        return [], "no record"
    if len(candidates) == 1:
        return [candidates[0]["id"]], "the one record with this number"
    if policy == "all":
        return [c["id"] for c in candidates], f"all {len(candidates)} records with this number"
    if policy == "earliest_created":
        best = min(candidates, key=lambda c: (c.get("created") or "9999", c["id"]))
        return [best["id"]], f"earliest created of {len(candidates)} records with this number"
    best = max(candidates, key=lambda c: (c.get("updated") or "", c["id"]))
    return [best["id"]], f"last updated of {len(candidates)} records with this number"


def wants_lead(calls: Sequence[CallSession], rule: CreateRule) -> bool:
    return rule == "always" or (rule == "inbound" and any(c.direction == "inbound" for c in calls))


# -- delivery --------------------------------------------------------------------------------------
async def lookup(crm: Connector, number: str) -> list[Contact]:
    """The CRM's contacts with this number (read-only)."""
    if isinstance(crm, PhoneLookup):
        return await crm.find_contacts_by_phone(number)
    page = await require(crm, Contacts).search_contacts(number, 20, None)
    return [c for c in page.contacts if to_e164(c.phone) == number]


def _candidate(contact: Contact) -> dict[str, Any]:
    assert contact.id
    return {
        "id": contact.id,
        "created": contact.date_added.isoformat() if contact.date_added else None,
        "updated": contact.date_updated.isoformat() if contact.date_updated else None,
    }


def _new_lead(number: str, calls: Sequence[CallSession]) -> Contact:
    name = next(
        (c.from_name if c.direction == "inbound" else c.to_name for c in calls if c.from_name or c.to_name),
        None,
    )
    first, _, last = (name or "").partition(" ")
    return Contact(
        first_name=first or None,
        last_name=last or ("Caller " + number if not name else None),
        phone=number,
        source="Phone call",
    )


class CallsHandler:
    """Delivers `calls.log` and `calls.recording` (see the module doc)."""

    def __init__(
        self,
        connector_for: Callable[[str], Connector],
        record: Callable[[Connection, str, str, dict[str, Any]], None],
        known: Callable[[str, list[str]], Awaitable[dict[str, list[str]]]],
    ) -> None:
        self._connector_for = connector_for
        self._record = record  # (conn, source, session id, values) -> update its call_logs row
        self._known = known  # (target, numbers) -> the records earlier calls were logged on

    async def page(self, op: SyncOperation, ctx: Any) -> dict[str, Any]:
        cmd = CallsPage.of(op)
        crm = self._connector_for(op.connection)
        telephony = require(self._connector_for(cmd.source), CallLogs)
        progress = ctx.progress
        numbers: dict[str, list[dict[str, Any]]] = dict(progress.get("numbers", {}))
        done: dict[str, dict[str, Any]] = dict(progress.get("done", {}))
        todo = [c for c in cmd.calls if c.id not in done]
        by_number: dict[str, list[CallSession]] = {}
        for call in todo:
            if number := external_number(call):
                by_number.setdefault(number, []).append(call)
        if unknown := sorted(set(by_number) - set(numbers)):
            for number, ids in (await self._known(op.connection, unknown)).items():
                numbers[number] = [{"id": i, "known": True} for i in ids]
        for number in sorted(set(by_number) - set(numbers)):
            numbers[number] = [_candidate(c) for c in await lookup(crm, number) if c.id]
            await ctx.checkpoint({"numbers": numbers})
        await self._create_leads(crm, cmd.policy, by_number, numbers, ctx)
        failed: dict[str, str] = {}
        for call in todo:
            try:
                done[call.id] = await self._log(crm, telephony, cmd.policy, call, numbers, ctx)
            except (InvalidRequestError, NotFoundError) as exc:
                failed[call.id] = exc.message
                continue
            await ctx.checkpoint({"done": done})
        source = cmd.source
        for sid, outcome in done.items():
            ctx.on_success(lambda conn, sid=sid, outcome=outcome: self._record(conn, source, sid, outcome))
        result = {"numbers": numbers, "done": done, "failed": failed, **tally(done.values())}
        await ctx.checkpoint(result)
        if failed:
            shown = "; ".join(f"{sid}: {why}" for sid, why in list(failed.items())[:5])
            raise InvalidRequestError(
                f"{op.connection} refused {len(failed)} of {len(cmd.calls)} call(s) of this page: {shown}. "
                f"The other {len(done)} were logged.",
                provider=crm.provider,
                hint="Fix the cause in the CRM, then retry_failed_sync resends only the refused calls.",
            )
        return result

    async def _create_leads(
        self,
        crm: Connector,
        policy: CallPolicy,
        by_number: dict[str, list[CallSession]],
        numbers: dict[str, list[dict[str, Any]]],
        ctx: Any,
    ) -> None:
        """One lead per unknown number the rule asks for: batched where the CRM can (an upsert by
        phone, so a repeat after a crash finds the lead it made)."""
        wanted = [
            n for n, calls in sorted(by_number.items()) if not numbers[n] and wants_lead(calls, policy.create)
        ]
        if wanted and ctx.read_before_create:  # an earlier attempt may have made them unrecorded
            for number in wanted:
                numbers[number] = [_candidate(c) for c in await lookup(crm, number) if c.id]
            wanted = [n for n in wanted if not numbers[n]]
        if not wanted:
            return
        leads = [_new_lead(n, by_number[n]) for n in wanted]
        if isinstance(crm, Batch):
            size = max(1, crm.max_batch)
            for first in range(0, len(leads), size):
                chunk = wanted[first : first + size]
                for item in await crm.upsert_contacts(leads[first : first + size]):
                    if item.contact is not None and item.contact.id:
                        numbers[chunk[item.index]] = [{**_candidate(item.contact), "created_lead": True}]
                await ctx.checkpoint({"numbers": numbers})
            return
        writer = require(crm, Contacts)
        for number, lead in zip(wanted, leads, strict=True):
            saved, _new = await writer.upsert_contact(lead)
            numbers[number] = [{**_candidate(saved), "created_lead": True}]
            await ctx.checkpoint({"numbers": numbers})

    async def _log(
        self,
        crm: Connector,
        telephony: CallLogs,
        policy: CallPolicy,
        call: CallSession,
        numbers: dict[str, list[dict[str, Any]]],
        ctx: Any,
    ) -> dict[str, Any]:
        number = external_number(call)
        candidates = numbers.get(number or "", [])
        if candidates and all(c.get("known") for c in candidates):
            contacts, match = [c["id"] for c in candidates], "as this number's earlier calls"
        else:
            contacts, match = pick(candidates, policy.match)
        created = any(c.get("created_lead") for c in candidates)
        outcome: dict[str, Any] = {"contacts": contacts, "match": match, "lead_created": created}
        if not contacts:
            return {**outcome, "status": "skipped", "reason": "no record with this number; rule says no lead"}
        look = bool(ctx.read_before_create)
        recording, attachment = await self._recording(crm, telephony, policy, call, contacts[0], look)
        body = compose(call, recording=recording, match=match)
        owner = policy.owner_for(call)
        activities: dict[str, str] = {}
        kind = "call" if isinstance(crm, CallActivities) else "note"
        for contact_id in contacts:
            activities[contact_id] = await _log_one(crm, contact_id, call, body, owner, look)
        task = None
        if policy.wants_task(call):
            task = await _follow_up(crm, contacts[0], call, body, look, ctx.now)
        state = "none" if call.recording is None else recording.split(" ", 1)[0].strip(":")
        return {
            **outcome,
            "status": "logged",
            "kind": kind,
            "activities": activities,
            "owner": owner,
            "recording": state,
            "attachment": attachment,
            "task": task,
        }

    async def _recording(
        self,
        crm: Connector,
        telephony: CallLogs,
        policy: CallPolicy,
        call: CallSession,
        contact_id: str,
        look: bool,
    ) -> tuple[str, str | None]:
        """What became of the call's recording, in the words the log shows, and the attachment id."""
        rec = call.recording
        if rec is None:
            return "none", None
        if not rec.ready:
            if isinstance(crm, CallActivities):  # a call log can be updated in place later
                return "pending: attached to this log when the phone system has it ready", None
            return "pending: not ready when this was logged; it is in the phone system's call log", None
        if not isinstance(crm, Attachments):
            return f"linked: {rec.content_uri} (the phone system deletes recordings after 90 days)", None
        cap = min(policy.max_recording_bytes, crm.max_attachment_bytes)
        filename = recording_filename(call, rec.content_type)
        found = await crm.find_attachment(contact_id, filename) if look else None
        if found:
            return f"attached: {filename}", found
        try:
            content, content_type = await telephony.download_recording(rec, cap)
        except InvalidRequestError as exc:  # past the size cap: a link is all that fits
            return f"linked: {rec.content_uri} (not attached: {exc.message})", None
        filename = recording_filename(call, content_type or rec.content_type)
        return f"attached: {filename}", await crm.attach_file(contact_id, filename, content, content_type)

    async def recording(self, op: SyncOperation, ctx: Any) -> dict[str, Any]:
        """`calls.recording`: attach the now-ready recording and update the log in place."""
        cmd = CallRecordingUpdate.of(op)
        crm = self._connector_for(op.connection)
        telephony = require(self._connector_for(cmd.source), CallLogs)
        look = bool(ctx.read_before_create) or bool(ctx.progress)
        recording, attachment = await self._recording(
            crm, telephony, cmd.policy, cmd.call, cmd.contacts[0], look
        )
        await ctx.checkpoint({"attachment": attachment})
        body = compose(cmd.call, recording=recording)
        if isinstance(crm, CallActivities):
            for activity_id in cmd.activities.values():
                await crm.update_call(activity_id, {"description": body, "external_id": cmd.call.id})
        state = recording.split(" ", 1)[0].strip(":")
        outcome = {"recording": state, "attachment": attachment}
        ctx.on_success(lambda conn: self._record(conn, cmd.source, cmd.call.id, outcome))
        return outcome


async def _log_one(
    crm: Connector, contact_id: str, call: CallSession, body: str, owner: str | None, look: bool
) -> str:
    """The call on one contact, as a call activity or a note; found first after a crash."""
    if isinstance(crm, CallActivities):
        found = await crm.find_call(contact_id, call.id) if look else None
        if found is not None and found.id:
            return found.id
        saved = await crm.log_call(
            CallActivity(
                contact_id=contact_id,
                direction=call.direction,
                result=call.result,
                started_at=call.started_at,
                duration_seconds=call.duration_seconds,
                subject=subject(call),
                description=body,
                owner_id=owner,
                external_id=call.id,
            )
        )
        assert saved.id
        return saved.id
    notes = require(crm, Notes)
    return await find_or_create_note(
        notes, contact_id, marker(call.id, "call"), f"{subject(call)}\n{body}", look_first=look
    )


async def _follow_up(
    crm: Connector, contact_id: str, call: CallSession, body: str, look: bool, now: Any
) -> str | None:
    if not isinstance(crm, Tasks):
        return None
    return await find_or_create_task(
        crm,
        contact_id,
        marker(call.id, "missed-call"),
        f"Call back: {subject(call)}",
        body,
        now + timedelta(hours=1),
        look_first=look,
    )


def tally(outcomes: Any) -> dict[str, int]:
    """Counts over per-call outcomes (what the tool and status report)."""
    counts = dict.fromkeys(("logged", "skipped", "leads_created", "matched", "attachments", "tasks"), 0)
    for o in outcomes:
        counts["logged" if o.get("status") == "logged" else "skipped"] += 1
        counts["leads_created"] += bool(o.get("lead_created"))
        counts["matched"] += bool(o.get("contacts")) and not o.get("lead_created")
        counts["attachments"] += bool(o.get("attachment"))
        counts["tasks"] += bool(o.get("task"))
    return counts


def build_calls_handlers(
    connector_for: Callable[[str], Connector],
    record: Callable[[Connection, str, str, dict[str, Any]], None],
    known: Callable[[str, list[str]], Awaitable[dict[str, list[str]]]],
) -> dict[str, Callable[[SyncOperation, Any], Awaitable[dict[str, Any]]]]:
    """The handlers of `calls.log` and `calls.recording`, for `build_worker`."""
    handler = CallsHandler(connector_for, record, known)
    return {CallsPage.action: handler.page, CallRecordingUpdate.action: handler.recording}

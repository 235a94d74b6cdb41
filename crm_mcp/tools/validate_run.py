"""The comparison walk behind validate_sync (imported on first use: it needs SQLAlchemy and the state).

Reads are bounded (the sample, LIST_CAP contacts for duplicate and remote-only checks) and go
through the connector, whose limiter keeps the walk inside the CRM's rate limits. Repairs are
collected while walking and enqueued together in one transaction at the end.

With `compare_to` (`run_cross_validation`) it compares two CRM connections' contacts instead,
with sync_records' comparison; its repair is a sync_records run over the same records.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from sqlalchemy import select

from crm_mcp.connectors.base import APPOINTMENT_STATUSES, Contact, Contacts, Tags
from crm_mcp.errors import NotFoundError
from crm_mcp.state import refs
from crm_mcp.state.models import Appointment, Lead, SyncOperation
from crm_mcp.sync.commands import AppointmentChange, Command, ContactData, ContactUpsert, queue
from crm_mcp.sync.records import RecordsUpsert, decide, find_matches, in_window, match_key
from crm_mcp.tools.appointments import create_command
from crm_mcp.tools.records import SyncRequest, field_pairs, run_sync
from crm_mcp.tools.validate_report import (
    LIST_CAP,
    Duplicate,
    Issue,
    Mismatch,
    Repair,
    ValidationReport,
    diff_appointment,
    diff_contact,
    summary_for,
)

Fix = tuple[str, str, Command, list[int]]  # issue, local id, the command that fixes it, stale ref ids


async def run_validation(
    rt: Any, ctx: Any, connection: str, obj: str, since: datetime | None, sample: int, repair_key: str | None
) -> ValidationReport:
    connector = rt.connector(connection)
    model = Appointment if obj == "appointment" else Lead
    local_type = "appointment" if obj == "appointment" else "lead"
    db = await rt.database()
    async with db.sessions() as s:
        q = select(model).where(model.connection == connection)
        if since is not None:
            q = q.where(model.updated_at >= since)
        rows = list((await s.execute(q.order_by(model.updated_at.desc()).limit(sample))).scalars())
        ids = [r.id for r in rows]
        linked = await refs.refs_for(s, connection, local_type, ids)
        known_remote = await refs.remote_ids(s, connection, "appointment")
        ops: dict[str, list[SyncOperation]] = defaultdict(list)
        for op in (
            await s.execute(
                select(SyncOperation).where(
                    SyncOperation.connection == connection, SyncOperation.entity_id.in_(ids)
                )
            )
        ).scalars():
            ops[op.entity_id].append(op)
    report = ValidationReport(
        connection=connection,
        object=obj,
        checked=len(rows),
        in_sync=0,
        pending=0,  # type: ignore[arg-type]
        summary="",
    )
    fixes: list[Fix] = []
    contacts: dict[str, str] = {}  # remote contact id -> local id
    for i, row in enumerate(rows, 1):
        await ctx.report_progress(i, len(rows) + 1, f"compared {i}/{len(rows)} {obj}(s)")
        states = {op.status for op in ops[row.id]}
        dead = [op for op in ops[row.id] if op.status == "dead"]
        for op in dead:
            if "Conflict" in (op.last_error or ""):
                report.unresolved_conflicts.append(Issue(local_id=row.id, detail=(op.last_error or "")[:300]))
        if states & {"pending", "in_flight"}:
            report.pending += 1
            continue
        remote_type = "appointment" if obj == "appointment" else "contact"
        ref = linked[row.id].get(remote_type)
        if ref is None:
            if obj == "contact" and await _found_by_email(connector, row):
                report.in_sync += 1
                continue
            why = "never delivered" + (
                f"; its operation is dead: {(dead[0].last_error or '')[:160]}" if dead else ""
            )
            report.missing_remote.append(Issue(local_id=row.id, detail=why))
            fixes.append(("missing_remote", row.id, _create_fix(row, obj), []))
            continue
        try:
            remote = await (
                connector.get_appointment(ref.remote_id)
                if obj == "appointment"
                else connector.get_contact(ref.remote_id)
            )
        except NotFoundError:
            stale = [r.id for r in linked[row.id].values()] if obj == "appointment" else [ref.id]
            report.stale_mappings.append(
                Issue(
                    local_id=row.id,
                    remote_id=ref.remote_id,
                    detail=f"the CRM {remote_type} was deleted (404)",
                )
            )
            fixes.append(("stale_mapping", row.id, _create_fix(row, obj), stale))
            continue
        if obj == "appointment" and "contact" in linked[row.id]:
            contacts[linked[row.id]["contact"].remote_id] = row.id
        diff = diff_appointment(row, remote) if obj == "appointment" else diff_contact(row, remote)
        if not diff:
            report.in_sync += 1
            continue
        for field, (mine, theirs) in diff.items():
            report.mismatches.append(
                Mismatch(
                    local_id=row.id,
                    remote_id=ref.remote_id,
                    field=field,
                    local=_plain(mine),
                    remote=_plain(theirs),
                )
            )
        fix = _update_fix(row, obj, diff)
        if fix:
            fixes.append(("mismatch", row.id, fix, []))
    await ctx.report_progress(len(rows), len(rows) + 1, "checking duplicates and CRM-only records")
    await _crm_side(connector, rows, contacts, known_remote, report)
    if repair_key and fixes:
        report.repairs = await _enqueue(rt, connection, repair_key, fixes)
    report.summary, report.recommendations = summary_for(report)
    await ctx.report_progress(len(rows) + 1, len(rows) + 1, "done")
    return report


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


async def _found_by_email(connector: Any, lead: Any) -> bool:
    if not lead.email:
        return False
    page = await connector.search_contacts(lead.email, 10, None)
    return any((c.email or "").lower() == lead.email.lower() for c in page.contacts)


async def _crm_side(
    connector: Any, rows: list[Any], contacts: dict[str, str], known: set[str], report: ValidationReport
) -> None:
    """Duplicate contacts per local email, and CRM appointments of our contacts that we do not have."""
    emails = sorted(
        {(getattr(r, "contact_email", None) or getattr(r, "email", None) or "").lower() for r in rows} - {""}
    )[:LIST_CAP]
    for email in emails:
        page = await connector.search_contacts(email, 10, None)
        same = sorted(c.id for c in page.contacts if c.id and (c.email or "").lower() == email)
        if len(same) > 1:
            report.duplicates.append(Duplicate(key=email, contact_ids=same))
    for contact_id in list(contacts)[:LIST_CAP]:
        for appt in await connector.list_contact_appointments(contact_id):
            if appt.id and appt.id not in known:
                report.missing_local.append(
                    Issue(
                        remote_id=appt.id,
                        detail=f"CRM appointment at {appt.start_time.isoformat()} for contact {contact_id}",
                    )
                )


def _create_fix(row: Any, obj: str) -> Command:
    if obj == "appointment":
        return create_command(row)
    data = row.data or {}
    contact = ContactData(
        first_name=row.first_name or "Unknown",
        last_name=row.last_name,
        email=row.email,
        phone=row.phone,
        company_name=data.get("company_name"),
        source=row.source,
        tags=list(data.get("tags") or []),
        custom_fields=dict(data.get("custom_fields") or {}),
    )
    return ContactUpsert(lead_id=row.id, contact=contact)


def _update_fix(row: Any, obj: str, diff: dict[str, Any]) -> Command | None:
    if obj == "contact":
        return _create_fix(row, obj)  # upsert by email/phone rewrites the contact from the local lead
    changes: dict[str, Any] = {}
    if "status" in diff and row.status in APPOINTMENT_STATUSES:
        changes["status"] = row.status
    for field in ("start_time", "end_time"):
        if field in diff and getattr(row, field) is not None:
            changes[field] = getattr(row, field).isoformat()
    if "title" in diff and row.title:
        changes["title"] = row.title
    if not changes:
        return None
    return AppointmentChange(
        appointment_id=row.id,
        action_name="repair",
        reason="validate_sync repair: local record wins",
        changes=changes,
    )


async def _enqueue(rt: Any, connection: str, key: str, fixes: list[Fix]) -> list[Repair]:
    db = await rt.database()
    now = rt.clock()
    out: list[Repair] = []
    async with db.begin_write() as s:
        for issue, local_id, command, stale in fixes:
            if stale:
                await refs.unlink(s, stale)
            op, created = await queue(
                s,
                command,
                key=f"{key}:{issue}:{local_id}",
                connection=connection,
                now=now,
                deadline=timedelta(seconds=rt.settings.sync_deadline_seconds),
            )
            out.append(
                Repair(
                    issue=issue,
                    local_id=local_id,
                    action=command.action,
                    sync_operation_id=op.id,
                    replayed=not created,
                )
            )
    return out


# -- two CRM connections (compare_to) ----------------------------------------------------------------
async def run_cross_validation(
    rt: Any, ctx: Any, a: str, b: str, since: datetime | None, sample: int, repair_key: str | None
) -> ValidationReport:
    """Contacts of connection `a` (local) against those of `b` (remote), matched by email with
    sync_records' comparison: missing in `b`, only in `b`, field mismatches. At most `sample`
    records of each side, in the sources' page order. Records whose sync to `b` is still queued
    count as pending. `repair_key`: a sync_records run from `a` to `b` over the same pages (a wins)."""
    if a == b:
        raise ToolError("compare_to must name another connection than `connection`.")
    mine, theirs = rt.connector(a, Contacts), rt.connector(b, Contacts)
    pairs = await field_pairs(rt, a, b)
    tags = isinstance(mine, Tags) and isinstance(theirs, Tags)
    size = min(100, sample)
    pages = math.ceil(sample / size)
    queued = await _queued_keys(rt, b)
    report = ValidationReport(connection=a, object="contact", checked=0, in_sync=0, pending=0, summary="")
    done = 0
    async for contacts in _walk(mine, size, sample, since):
        matches = await find_matches(theirs, contacts, "email")
        for d in decide(contacts, matches, pairs, "email", tags=tags):
            report.checked += d.action != "skipped"
            if d.action in ("skipped", "unchanged"):
                report.in_sync += d.action == "unchanged"
            elif d.key in queued:
                report.pending += 1
            elif d.action == "create" or d.target is None:
                report.missing_remote.append(Issue(local_id=d.source.id, detail=f"{d.key} is not in {b}"))
            else:
                report.mismatches += [
                    Mismatch(local_id=d.source.id or "", remote_id=d.target.id or "", field=name,
                             local=_plain(mine_value), remote=_plain(their_value))
                    for name, (mine_value, their_value) in d.diff.items()
                ]  # fmt: skip
        done += 1
        await ctx.report_progress(done, 2 * pages + 1, f"compared page {done} of {a} with {b}")
    async for contacts in _walk(theirs, size, sample, since):
        found = await find_matches(mine, contacts, "email")
        for c in contacts:
            key = match_key(c, "email")
            if key and key not in found:
                report.missing_local.append(Issue(remote_id=c.id, detail=f"{key} is only in {b}"))
        done += 1
        await ctx.report_progress(done, 2 * pages + 1, f"looked for {b}-only contacts")
    if repair_key and (report.missing_remote or report.mismatches):
        request = SyncRequest(a, b, since, "email", size, pages, idempotency_key=f"{repair_key}:sync")
        outcome = await run_sync(rt, ctx, request, pairs)
        report.repairs = [
            Repair(issue="cross_crm_sync", local_id=f"page {page}", action=RecordsUpsert.action,
                   sync_operation_id=op_id, replayed=not created)
            for page, op_id, created in outcome.run.queued
        ]  # fmt: skip
    report.summary, report.recommendations = _cross_summary(report, a, b)
    return report


async def _walk(
    connector: Any, size: int, sample: int, since: datetime | None
) -> AsyncIterator[list[Contact]]:
    cursor, left = None, sample
    while left > 0:
        page = await connector.search_contacts(None, size, cursor)
        contacts = page.contacts[:left]
        left -= len(contacts)
        yield [c for c in contacts if in_window(c, since)]
        cursor = page.next_cursor
        if cursor is None or not contacts:
            return


async def _queued_keys(rt: Any, target: str) -> set[str]:
    """Emails waiting in sync pages queued for `target` (not drift: they are on their way)."""
    db = await rt.database()
    query = select(SyncOperation).where(
        SyncOperation.connection == target,
        SyncOperation.action == RecordsUpsert.action,
        SyncOperation.status.in_(("pending", "in_flight")),
    )
    async with db.sessions() as s:
        ops = list((await s.execute(query)).scalars())
    return {
        key
        for op in ops
        for c in RecordsUpsert.of(op).contacts
        if (key := match_key(Contact(**c.model_dump()), "email"))
    }


def _cross_summary(r: ValidationReport, a: str, b: str) -> tuple[str, list[str]]:
    differing = len({m.local_id for m in r.mismatches})
    text = (
        f"Compared {r.checked} contact(s) of {a} (local) with {b} (remote) by email: {r.in_sync} in "
        f"sync, {r.pending} pending, {len(r.missing_remote)} missing in {b}, {len(r.missing_local)} "
        f"only in {b}, {differing} with different fields"
        + (f"; a sync of {len(r.repairs)} page(s) queued." if r.repairs else ".")
    )
    todo = []
    if (r.missing_remote or r.mismatches) and not r.repairs:
        todo.append(
            f"Run validate_sync again with repair=true and an idempotency_key (or sync_records with "
            f"source={a}, target={b}) to copy {a}'s records over; {a} wins."
        )
    if r.missing_local:
        todo.append(
            f"Contacts only in {b} are never deleted by a repair; to copy them into {a}, run "
            f"sync_records with source={b}, target={a}."
        )
    if r.repairs:
        todo.append("Follow the queued sync with get_sync_status.")
    return text, todo

"""The comparison walk behind validate_sync (imported on first use: it needs SQLAlchemy and the state).

Reads are bounded (the sample, LIST_CAP contacts for duplicate and remote-only checks) and go
through the connector, whose limiter keeps the walk inside the CRM's rate limits. Repairs are
collected while walking and enqueued together in one transaction at the end.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from crm_mcp.connectors.base import APPOINTMENT_STATUSES
from crm_mcp.errors import NotFoundError
from crm_mcp.state import refs
from crm_mcp.state.models import Appointment, Lead, SyncOperation
from crm_mcp.sync.commands import AppointmentChange, Command, ContactData, ContactUpsert, queue
from crm_mcp.tools.appointments import create_command
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

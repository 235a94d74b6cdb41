"""validate_sync's report: the models the tool returns and the pure comparisons behind them.

Kept apart from the tool (`validate`) and the run (`validate_run`) so both can use them without
importing each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

LIST_CAP = 50


class Issue(BaseModel):
    local_id: str | None = None
    remote_id: str | None = None
    detail: str


class Mismatch(BaseModel):
    local_id: str
    remote_id: str
    field: str
    local: Any
    remote: Any = Field(description="CRM data.")


class Duplicate(BaseModel):
    key: str = Field(description="Email or phone several CRM contacts share.")
    contact_ids: list[str]


class Repair(BaseModel):
    issue: str
    local_id: str
    action: str
    sync_operation_id: str
    replayed: bool


class ValidationReport(BaseModel):
    connection: str
    object: Literal["appointment", "contact"]
    checked: int = Field(description="Records compared.")
    in_sync: int
    pending: int = Field(description="Still queued (not counted as drift).")
    missing_remote: list[Issue] = Field(default_factory=list, description="Local records the CRM lacks.")
    missing_local: list[Issue] = Field(
        default_factory=list, description="CRM records of our contacts we lack."
    )
    mismatches: list[Mismatch] = Field(default_factory=list)
    duplicates: list[Duplicate] = Field(default_factory=list)
    stale_mappings: list[Issue] = Field(
        default_factory=list, description="Mappings whose CRM record is gone."
    )
    unresolved_conflicts: list[Issue] = Field(default_factory=list)
    repairs: list[Repair] = Field(default_factory=list)
    truncated: bool = Field(False, description=f"Lists cut at {LIST_CAP}.")
    summary: str
    recommendations: list[str] = Field(default_factory=list)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return abs((a - b).total_seconds()) < 1
    return (a or None) == (b or None)


def diff_appointment(local: Any, remote: Any) -> dict[str, tuple[Any, Any]]:
    """Pure: field -> (local, remote) for every field that differs.

    A confirmed booking read back as scheduled is not drift: a CRM with one word for both (a
    meeting outcome that is only "scheduled") cannot hold the difference.
    """
    remote_status = remote.status
    if (local.status, remote_status) == ("confirmed", "scheduled"):
        remote_status = local.status
    pairs = {
        "start_time": (local.start_time, remote.start_time),
        "end_time": (local.end_time, remote.end_time or local.end_time),
        "status": (local.status, remote_status),
        "title": (local.title, remote.title),
        "calendar_id": (local.calendar_id, remote.calendar_id),
    }
    return {k: v for k, v in pairs.items() if not _same(*v)}


def diff_contact(lead: Any, contact: Any) -> dict[str, tuple[Any, Any]]:
    def digits(v: str | None) -> str:
        return "".join(ch for ch in v or "" if ch.isdigit())[-10:]

    pairs = {
        "first_name": (lead.first_name, contact.first_name),
        "last_name": (lead.last_name, contact.last_name),
        "email": ((lead.email or "").lower() or None, (contact.email or "").lower() or None),
        "phone": (digits(lead.phone) or None, digits(contact.phone) or None),
    }
    return {k: v for k, v in pairs.items() if v[0] is not None and not _same(*v)}


def cap_report(report: ValidationReport) -> None:
    for name in (
        "missing_remote",
        "missing_local",
        "mismatches",
        "duplicates",
        "stale_mappings",
        "unresolved_conflicts",
    ):
        items = getattr(report, name)
        if len(items) > LIST_CAP:
            setattr(report, name, items[:LIST_CAP])
            report.truncated = True


def summary_for(r: ValidationReport) -> tuple[str, list[str]]:
    drift = (
        len(r.missing_remote)
        + len(r.missing_local)
        + len(r.mismatches)
        + len(r.duplicates)
        + len(r.stale_mappings)
        + len(r.unresolved_conflicts)
    )
    text = (
        f"Compared {r.checked} local {r.object}(s): {r.in_sync} in sync, {r.pending} pending, {drift} issues"
        + (f", {len(r.repairs)} fix(es) queued." if r.repairs else ".")
    )
    todo = []
    if (r.missing_remote or r.stale_mappings or r.mismatches) and not r.repairs:
        todo.append("Run validate_sync again with repair=true and an idempotency_key to queue the fixes.")
    if r.duplicates:
        todo.append("Merge the duplicate contacts in the CRM (not automated: a merge is irreversible).")
    if r.missing_local:
        todo.append(
            "Appointments booked directly in the CRM are not in the local record; check the "
            "webhook registration (check_integration_health)."
        )
    if r.unresolved_conflicts:
        todo.append(
            "Resolve conflicts: list_dead_letters shows both values; fix one side, then retry_failed_sync."
        )
    if r.repairs:
        todo.append("Follow the queued fixes with get_sync_status.")
    return text, todo

"""validate_sync: compare the local system of record with the CRM and report (or queue fixes for) drift.

Sync bugs hide: a create that died, a mapping whose remote was deleted by hand, a duplicate
contact a form created. This walks a bounded sample of local records, reads their CRM side
through the rate-limited connector, and reports each kind of drift with both values. With
repair=true it never fixes inline: it queues the fixes in the outbox (local record wins), under
the caller's idempotency key, so a repeated repair queues nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from crm_mcp.tools._base import crm_tool
from crm_mcp.tools.appointments import ConnectionArg

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

LIST_CAP = 50


class Issue(BaseModel):
    local_id: str | None = None
    remote_id: str | None = None
    detail: str


class Mismatch(BaseModel):
    local_id: str
    remote_id: str
    field: str
    local: Any = Field(description="Local value.")
    remote: Any = Field(description="CRM value (CRM data).")


class Duplicate(BaseModel):
    key: str = Field(description="The email or phone shared by several CRM contacts.")
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
    checked: int = Field(description="Local records compared (at most `sample`).")
    in_sync: int
    pending: int = Field(description="Records still waiting in the outbox (not counted as drift).")
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
    truncated: bool = Field(False, description=f"Some lists were cut at {LIST_CAP} entries.")
    summary: str
    recommendations: list[str] = Field(default_factory=list)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return abs((a - b).total_seconds()) < 1
    return (a or None) == (b or None)


def diff_appointment(local: Any, remote: Any) -> dict[str, tuple[Any, Any]]:
    """Pure: field -> (local, remote) for every field that differs."""
    pairs = {
        "start_time": (local.start_time, remote.start_time),
        "end_time": (local.end_time, remote.end_time or local.end_time),
        "status": (local.status, remote.status),
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


def _cap(report: ValidationReport) -> None:
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


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Validate (and optionally repair) sync with the CRM",
        read_only=False,
        destructive=True,
        idempotent=True,
        open_world=True,
    )
    async def validate_sync(
        ctx: Context,
        connection: ConnectionArg = None,
        object: Annotated[
            Literal["appointment", "contact"],
            Field(description="What to compare: appointments or leads/contacts."),
        ] = "appointment",
        since: Annotated[
            datetime | None, Field(description="Only local records changed since (ISO 8601).")
        ] = None,
        sample: Annotated[
            int, Field(ge=1, le=500, description="Most local records to compare (newest first).")
        ] = 100,
        repair: Annotated[
            bool, Field(description="Queue fixes in the outbox (local record wins). Needs idempotency_key.")
        ] = False,
        idempotency_key: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=150,
                description="Required with repair=true; repeating it queues nothing twice.",
            ),
        ] = None,
    ) -> ValidationReport:
        """Compare local records with the CRM: missing on either side, field mismatches (both values),
        duplicate CRM contacts, stale mappings, unresolved conflicts. repair=true queues the fixes."""
        if repair and not idempotency_key:
            raise ToolError(
                "repair=true needs an idempotency_key, so a repeated repair never queues fixes twice."
            )
        from crm_mcp.tools.validate_run import run_validation

        conn = rt.connection(connection, "contacts")
        report = await run_validation(
            rt, ctx, conn.name, object, since, sample, idempotency_key if repair else None
        )
        _cap(report)
        return report


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

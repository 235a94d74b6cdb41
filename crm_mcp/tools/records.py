"""sync_records: copy missing or changed contacts from one CRM connection to another, via the outbox.

The "one source of truth across platforms" tool. It walks the source page by page, looks each
page up in the target by email (or phone), and decides per record with the comparison in
`crm_mcp.sync.records` (neutral fields, plus the custom fields the schema analyzer maps with high
confidence). Each page with writes is ONE outbox operation keyed `<run key>:page:<n>`, written in
its own transaction, carrying the next page's cursor and the run's counts: a run that stops
(crash, error, `max_pages`) continues from its last stored page when called again with the same
key, and a replayed page is never queued twice. The worker delivers the pages (batch API where
the target has one). A second run after delivery finds everything unchanged and queues nothing.

Without an idempotency_key, the run key is derived from the arguments plus a generation: a call
while the previous run's pages are still queued continues that run; once they are delivered, the
next call is a new run (a new comparison).
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from crm_mcp.connectors.base import Contacts, Tags
from crm_mcp.errors import CapabilityError, IdempotencyError
from crm_mcp.sync.records import (
    Decision,
    FieldPair,
    MatchOn,
    RecordsUpsert,
    RunTally,
    decide,
    find_matches,
    in_window,
    write_data,
)
from crm_mcp.tools._base import crm_tool, queue_write
from crm_mcp.tools.appointments import IdempotencyArg, derive_key
from crm_mcp.tools.args import SaneDateTime
from crm_mcp.tools.schema import propose_mapping
from crm_mcp.views import crm_fields

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

_NS = uuid.UUID("8f0d7c2e-5a41-4b7e-9c3a-2d6e1f4b8a90")
AUTO_MAP_CONFIDENCE = 0.8  # custom-field pairs below this are reported by analyze_crm_schema, not synced
CHANGES_SHOWN, OPS_SHOWN, REFUSED_SHOWN = 20, 50, 20

ConnectionName = Annotated[str, Field(min_length=1, max_length=128)]


class MappedField(BaseModel):
    source: str
    target: str
    confidence: float = Field(ge=0, le=1)


class RecordChange(BaseModel):
    key: str = Field(description="CRM data: email or phone.")
    action: Literal["create", "update"]
    fields: list[str] = Field(default_factory=list)


class RefusedRecord(BaseModel):
    key: str = Field(description="CRM data: email or phone.")
    error: str


class SyncRecordsResult(BaseModel):
    source: str
    target: str
    object: Literal["contacts"]
    dry_run: bool
    run_key: str | None = Field(None, description="Pass as idempotency_key to continue the run.")
    complete: bool = Field(description="False: call again with run_key.")
    resumed_from_page: int | None = None
    pages: int
    seen: int
    to_create: int
    to_update: int
    unchanged: int
    skipped: int = Field(description="No match key, or repeated.")
    operations: list[str] = Field(description=f"First {OPS_SHOWN}.")
    operations_total: int
    queued_now: int = Field(description="Added by this call.")
    delivery: dict[str, int] = Field(description="Operations by status.")
    refused: list[RefusedRecord] = Field(default_factory=list, description="Refused by the target.")
    mapping: list[MappedField] = Field(description="Custom fields synced.")
    changes: list[RecordChange] = Field(default_factory=list, description=f"First {CHANGES_SHOWN} changes.")
    message: str
    warning: str | None = None  # the connection's last check failed: what to fix (see INSTRUCTIONS)


@dataclass(frozen=True)
class SyncRequest:
    source: str
    target: str
    since: datetime | None = None
    match_on: MatchOn = "email"
    page_size: int = 100
    max_pages: int | None = None
    dry_run: bool = False
    idempotency_key: str | None = None

    def args(self) -> dict[str, Any]:
        """What makes two runs the same request (dry_run, max_pages and the key do not)."""
        return {
            "source": self.source,
            "target": self.target,
            "object": "contacts",
            "since": self.since.isoformat() if self.since else None,
            "match_on": self.match_on,
            "page_size": self.page_size,
        }

    @property
    def fingerprint(self) -> str:
        return derive_key("sync_records", self.args()).rsplit(":", 1)[-1]


@dataclass
class Run:
    """A run's stored pages (page, operation id, status, result) and where it goes on."""

    key: str | None
    run_id: str
    pages: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)
    tally: RunTally = field(default_factory=RunTally)
    last_page: int = 0
    next_cursor: str | None = None
    complete: bool = False
    queued: list[tuple[int, str, bool]] = field(default_factory=list)  # this call: page, op id, created


@dataclass
class RunOutcome:
    result: SyncRecordsResult
    run: Run


async def field_pairs(rt: Runtime, source: str, target: str) -> list[FieldPair]:
    """Custom fields the schema analyzer maps from source to target with at least
    AUTO_MAP_CONFIDENCE. Standard fields need no mapping (they are neutral on `Contact`); a CRM
    without custom-field discovery maps none."""
    try:
        _, mine = await crm_fields(rt, source, "contact")
        _, theirs = await crm_fields(rt, target, "contact")
    except CapabilityError:
        return []
    mine, theirs = [f for f in mine if f.custom], [f for f in theirs if f.custom]
    by_source, by_target = {f.key: f for f in mine}, {f.key: f for f in theirs}
    mappings, _ = propose_mapping(mine, theirs)
    return [
        FieldPair(
            source=m.source,
            target=m.target,
            source_read=by_source[m.source].id or m.source,
            target_read=by_target[m.target].id or m.target,
            confidence=m.confidence,
        )
        for m in mappings
        if m.confidence >= AUTO_MAP_CONFIDENCE
    ]


async def run_sync(
    rt: Runtime, ctx: Context, req: SyncRequest, pairs: list[FieldPair] | None = None
) -> RunOutcome:
    """Walk the source, compare with the target, queue one operation per page with writes.
    `pairs`: the field mapping, when the caller has just proposed it (else proposed here).

    Raises:
        ToolError: source and target are the same connection.
        IdempotencyError: the key belongs to another request.
        ConnectorError: a source page or a target lookup failed (the pages stored so far stay;
            calling again with the same key continues after them).
    """
    source = rt.connector(req.source, Contacts)
    target = rt.connector(req.target, Contacts)
    if source.connection == target.connection:
        raise ToolError("source and target must be two different connections.")
    if pairs is None:
        pairs = await field_pairs(rt, source.connection, target.connection)
    tags = isinstance(source, Tags) and isinstance(target, Tags)
    run = Run(None, "") if req.dry_run else await open_run(rt, req, target.connection)
    tally, page_no, cursor, walked = run.tally, run.last_page, run.next_cursor, 0
    complete, changes = run.complete, list[RecordChange]()
    while not complete and (req.max_pages is None or walked < req.max_pages):
        page = await source.search_contacts(None, req.page_size, cursor)
        page_no, walked = page_no + 1, walked + 1
        contacts = [c for c in page.contacts if in_window(c, req.since)]
        decisions = decide(
            contacts, await find_matches(target, contacts, req.match_on), pairs, req.match_on, tags=tags
        )
        tally = tally.plus(decisions)
        writes = [d for d in decisions if d.action in ("create", "update")]
        changes += [_change(d) for d in writes[: CHANGES_SHOWN - len(changes)]]
        if writes and not req.dry_run:
            command = RecordsUpsert(
                run_id=run.run_id,
                request=req.fingerprint,
                source=source.connection,
                page=page_no,
                cursor=cursor,
                next_cursor=page.next_cursor,
                tally=tally,
                contacts=[write_data(d, pairs, tags=tags) for d in writes],
            )
            key = f"{run.key}:page:{page_no}"
            op, created = await queue_write(rt, command, key=key, connection=target.connection)
            run.queued.append((page_no, op.id, created))
        cursor, complete = page.next_cursor, page.next_cursor is None
        total = max(page_no, math.ceil(page.total / req.page_size)) if page.total is not None else None
        await ctx.report_progress(page_no, total, f"page {page_no}: {len(writes)} to write")
    result = _result(req, source.connection, target.connection, run, tally, page_no, complete, pairs)
    result.changes = changes
    return RunOutcome(result, run)


async def open_run(rt: Runtime, req: SyncRequest, target: str) -> Run:
    """The run this call belongs to, with the pages earlier calls stored.

    Raises:
        IdempotencyError: the key's pages were stored for other arguments or another target.
    """
    from sqlalchemy import select  # lazy: SQLAlchemy stays off start-up

    from crm_mcp.state.models import SyncOperation

    key = req.idempotency_key or await _derived_key(rt, req)
    run = Run(key, str(uuid.uuid5(_NS, key)))
    db = await rt.database()
    query = select(SyncOperation).where(
        SyncOperation.entity_type == RecordsUpsert.entity_type, SyncOperation.entity_id == run.run_id
    )
    async with db.sessions() as session:
        ops = list((await session.execute(query)).scalars())
    stored = sorted(((RecordsUpsert.of(op), op) for op in ops), key=lambda pair: pair[0].page)
    for command, op in stored:
        if command.request != req.fingerprint or op.connection != target:
            raise IdempotencyError(
                f"idempotency key {key!r} was already used for a sync run with other arguments; "
                "use a new key for a different request"
            )
        run.pages.append((command.page, op.id, op.status, op.result or {}))
    if stored:
        last = stored[-1][0]
        run.tally, run.last_page, run.next_cursor = last.tally, last.page, last.next_cursor
        run.complete = last.next_cursor is None
    return run


async def _derived_key(rt: Runtime, req: SyncRequest) -> str:
    """`<derived key of the arguments>:<generation>`: the latest generation while its pages are
    still queued (a repeated call continues it), else a new one (a new run)."""
    from sqlalchemy import select  # lazy: SQLAlchemy stays off start-up

    from crm_mcp.state.models import SyncOperation

    base = derive_key("sync_records", req.args())
    query = select(SyncOperation.idempotency_key, SyncOperation.status).where(
        SyncOperation.idempotency_key.startswith(f"{base}:", autoescape=True)
    )
    db = await rt.database()
    async with db.sessions() as session:
        rows = (await session.execute(query)).all()
    generations: dict[int, set[str]] = defaultdict(set)
    for key, status in rows:
        gen = key[len(base) + 1 :].split(":", 1)[0]
        if gen.isdigit():
            generations[int(gen)].add(status)
    if not generations:
        return f"{base}:1"
    last = max(generations)
    return f"{base}:{last if generations[last] & {'pending', 'in_flight'} else last + 1}"


def _change(d: Decision) -> RecordChange:
    action: Literal["create", "update"] = "create" if d.action == "create" else "update"
    return RecordChange(key=d.key or "", action=action, fields=sorted(d.diff))


def _result(
    req: SyncRequest,
    source: str,
    target: str,
    run: Run,
    tally: RunTally,
    pages: int,
    complete: bool,
    pairs: list[FieldPair],
) -> SyncRecordsResult:
    stored = {page: (op_id, status) for page, op_id, status, _ in run.pages}
    for page, op_id, _created in run.queued:
        stored.setdefault(page, (op_id, "pending"))
    ops = [op_id for _, (op_id, _) in sorted(stored.items())]
    refused = [RefusedRecord(**r) for *_, result in run.pages for r in result.get("refused") or []]
    queued_now = sum(created for *_, created in run.queued)
    result = SyncRecordsResult(
        source=source,
        target=target,
        object="contacts",
        dry_run=req.dry_run,
        run_key=run.key,
        complete=complete,
        resumed_from_page=run.last_page or None,
        pages=pages,
        seen=tally.seen,
        to_create=tally.create,
        to_update=tally.update,
        unchanged=tally.unchanged,
        skipped=tally.skipped,
        operations=ops[:OPS_SHOWN],
        operations_total=len(ops),
        queued_now=queued_now,
        delivery=dict(Counter(status for _, status in stored.values())),
        refused=refused[:REFUSED_SHOWN],
        mapping=[MappedField(source=p.source, target=p.target, confidence=p.confidence) for p in pairs],
        message="",
    )
    result.message = _message(result)
    return result


def _message(r: SyncRecordsResult) -> str:
    counts = (
        f"{r.to_create} to create, {r.to_update} to update, {r.unchanged} unchanged, "
        f"{r.skipped} skipped of {r.seen} record(s) in {r.pages} page(s)"
    )
    if r.dry_run:
        return f"Dry run: {counts}. Nothing was written."
    text = f"{counts}. {r.operations_total} page operation(s) for {r.target}, {r.queued_now} queued now"
    text += f" (resumed after page {r.resumed_from_page})." if r.resumed_from_page else "."
    if not r.complete:
        text += " The source was not walked to its end: call again with the same run_key to continue."
    if r.operations_total:
        text += " The worker delivers them; follow with get_sync_status."
    if r.refused:
        text += " Some records were refused by the target: see `refused` and list_dead_letters."
    return text


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Sync contacts between CRMs",
        read_only=False,
        destructive=True,
        idempotent=True,
        open_world=True,
    )
    async def sync_records(
        ctx: Context,
        source: Annotated[ConnectionName, Field(description="Connection to copy from (it wins).")],
        target: Annotated[ConnectionName, Field(description="Connection to copy into.")],
        object: Annotated[Literal["contacts"], Field()] = "contacts",
        since: Annotated[
            SaneDateTime | None,
            Field(description="Only records updated since."),
        ] = None,
        match_on: Annotated[
            MatchOn, Field(description="Pairs records: email, or phone (last 10 digits).")
        ] = "email",
        dry_run: Annotated[bool, Field(description="Report what would change; write nothing.")] = False,
        idempotency_key: IdempotencyArg = None,
        page_size: Annotated[
            int, Field(ge=1, le=100, description="Records per page (one operation each).")
        ] = 100,
        max_pages: Annotated[
            int | None,
            Field(ge=1, le=10_000, description="Stop after this many; call again to go on."),
        ] = None,
    ) -> SyncRecordsResult:
        """Copy contacts missing or changed in `target` from `source` (source wins, nothing deleted), one
        queued operation per page; call again with run_key to continue."""
        request = SyncRequest(
            source=source,
            target=target,
            since=since,
            match_on=match_on,
            page_size=page_size,
            max_pages=max_pages,
            dry_run=dry_run,
            idempotency_key=idempotency_key,
        )
        return (await run_sync(rt, ctx, request)).result

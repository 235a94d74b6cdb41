"""Handlers for ``/crm/v3/objects/{type}``: list, create, read, update, archive, search and batch.

Written once over an ``ObjectType`` and routed per type, so contacts, notes, tasks and meetings
behave alike where HubSpot's do (status codes from the official specs: create 201, read/update 200,
archive 204, batch create 201, other batches 200, any batch with failures 207). Each handler takes
the request and its parsed JSON body and returns ``(status, body)``; errors are raised as
``ApiError`` and rendered by the endpoint wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from crm_mcp.providers.hubspot.sandbox import batch
from crm_mcp.providers.hubspot.sandbox.associations import apply_associations, plan_associations
from crm_mcp.providers.hubspot.sandbox.errors import not_found, validation
from crm_mcp.providers.hubspot.sandbox.object_types import ObjectType
from crm_mcp.providers.hubspot.sandbox.render import render, render_full, split_names, with_associations
from crm_mcp.providers.hubspot.sandbox.search import search
from crm_mcp.providers.hubspot.sandbox.stats import Stats
from crm_mcp.providers.hubspot.sandbox.store import ObjectStore, Record
from crm_mcp.providers.hubspot.sandbox.values import iso_ms, validate_properties

LIST_MAX_LIMIT = 100
Result = tuple[int, Any]


def _page(next_after: str | None, body: dict[str, Any]) -> dict[str, Any]:
    if next_after is not None:
        body["paging"] = {"next": {"after": next_after, "link": f"?after={next_after}"}}
    return body


def _flag(req: Request, name: str) -> bool:
    return req.query_params.get(name, "false").lower() == "true"


class ObjectHandlers:
    """The object endpoints over one store; callers hold the sandbox lock."""

    def __init__(self, store: ObjectStore, stats: Stats, clock: Callable[[], float]) -> None:
        self.store = store
        self.stats = stats
        self.clock = clock

    def _read_shape(self, req: Request, otype: ObjectType, record: Record) -> dict[str, Any]:
        q = req.query_params
        out = render(otype, record, split_names(q.getlist("properties")) or None)
        assoc = split_names(q.getlist("associations"))
        return with_associations(out, otype, record, self.store, assoc) if assoc else out

    def _record(self, req: Request, otype: ObjectType, *, archived: bool = False) -> Record:
        key = req.path_params[otype.id_param]
        record = self.store.get(otype, key, id_property=req.query_params.get("idProperty"), archived=archived)
        if record is None:
            raise not_found()
        return record

    # ------------------------------------------------------------------ single objects
    def list_page(self, req: Request, body: Any, otype: ObjectType) -> Result:
        q = req.query_params
        limit_text, after = q.get("limit", "10"), q.get("after") or "0"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= LIST_MAX_LIMIT:
            raise validation(f"limit must be between 1 and {LIST_MAX_LIMIT}")
        if not after.isdigit():
            raise validation(f"after must be a paging cursor from paging.next.after, got {after!r}")
        limit = int(limit_text)
        pool = self.store.archived(otype) if _flag(req, "archived") else self.store.live(otype)
        rows = [r for r in pool if int(r["id"]) >= int(after)]
        results = [self._read_shape(req, otype, r) for r in rows[:limit]]
        return 200, _page(rows[limit]["id"] if len(rows) > limit else None, {"results": results})

    def create(self, req: Request, body: Any, otype: ObjectType) -> Result:
        if not isinstance(body, dict):
            raise validation("Invalid input JSON: expected an object with properties")
        props = validate_properties(otype, body.get("properties"), creating=True)
        planned = plan_associations(otype, body.get("associations"), self.store)
        record = self.store.create(otype, props)
        apply_associations(self.store, otype, record["id"], planned)
        self.stats.record_written(otype.name, 1)
        return 201, render_full(record)

    def read(self, req: Request, body: Any, otype: ObjectType) -> Result:
        return 200, self._read_shape(req, otype, self._record(req, otype, archived=_flag(req, "archived")))

    def update(self, req: Request, body: Any, otype: ObjectType) -> Result:
        if not isinstance(body, dict) or "properties" not in body:
            raise validation("Invalid input JSON: expected an object with properties")
        record = self._record(req, otype)
        self.store.update(otype, record, validate_properties(otype, body["properties"], creating=False))
        self.stats.record_written(otype.name, 1)
        return 200, render_full(record)

    def archive(self, req: Request, body: Any, otype: ObjectType) -> Result:
        """204 whether or not the record existed: archiving is idempotent."""
        record = self.store.get(otype, req.path_params[otype.id_param])
        if record is not None:
            self.store.archive(otype, record)
            self.stats.record_written(otype.name, 1)
        return 204, None

    def search(self, req: Request, body: Any, otype: ObjectType) -> Result:
        page = search(otype, self.store.live(otype), body)
        results = [render(otype, r, page.properties) for r in page.rows]
        return 200, _page(page.next_after, {"total": page.total, "results": results})

    # ------------------------------------------------------------------ batch
    def _finish(self, outcome: batch.BatchOutcome, otype: ObjectType, ok: int, started: str) -> Result:
        if outcome.written:
            self.stats.record_written(otype.name, outcome.written)
        return outcome.envelope(otype, ok, started, iso_ms(self.clock()))

    def batch_read(self, req: Request, body: Any, otype: ObjectType) -> Result:
        started = iso_ms(self.clock())
        outcome = batch.batch_read(self.store, otype, body, _flag(req, "archived"))
        return self._finish(outcome, otype, 200, started)

    def batch_create(self, req: Request, body: Any, otype: ObjectType) -> Result:
        started = iso_ms(self.clock())
        return self._finish(batch.batch_create(self.store, otype, body), otype, 201, started)

    def batch_update(self, req: Request, body: Any, otype: ObjectType) -> Result:
        started = iso_ms(self.clock())
        return self._finish(batch.batch_update(self.store, otype, body), otype, 200, started)

    def batch_upsert(self, req: Request, body: Any, otype: ObjectType) -> Result:
        started = iso_ms(self.clock())
        return self._finish(batch.batch_upsert(self.store, otype, body), otype, 200, started)

    def batch_archive(self, req: Request, body: Any, otype: ObjectType) -> Result:
        count = batch.batch_archive(self.store, otype, body)
        if count:
            self.stats.record_written(otype.name, count)
        return 204, None

"""Batch endpoints (``/crm/v3/objects/{type}/batch/{read,create,update,upsert,archive}``).

The envelope a client has to read: at most 100 inputs (more is a 400 for the whole call); each
input succeeds or fails on its own, and any failure turns the answer into **207** with
``numErrors`` and ``errors[]`` (``StandardError`` whose ``context`` names the failing ids or emails)
next to the ``results`` that did go through; all-ok is 200 (create: 201). Missing records are
grouped into one OBJECT_NOT_FOUND error, as HubSpot does. Upsert by ``idProperty: "email"`` creates
or updates and says which with ``new``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crm_mcp.providers.hubspot.sandbox.associations import apply_associations, plan_associations
from crm_mcp.providers.hubspot.sandbox.errors import (
    OBJECT_NOT_FOUND,
    ApiError,
    PropertyErrors,
    standard_error,
    validation,
)
from crm_mcp.providers.hubspot.sandbox.object_types import ObjectType
from crm_mcp.providers.hubspot.sandbox.render import render, render_full
from crm_mcp.providers.hubspot.sandbox.store import ObjectStore
from crm_mcp.providers.hubspot.sandbox.values import validate_properties

MAX_INPUTS = 100


@dataclass
class BatchOutcome:
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    written: int = 0

    def fail(self, exc: ApiError, context: dict[str, list[str]]) -> None:
        category = "VALIDATION_ERROR" if isinstance(exc, PropertyErrors) else exc.category
        self.errors.append(standard_error(category, exc.message, {**context, **exc.context}))

    def envelope(
        self, otype: ObjectType, ok_status: int, started: str, now: str
    ) -> tuple[int, dict[str, Any]]:
        errors = list(self.errors)
        if self.missing:
            msg = (
                f"Could not get some {otype.label} objects, they may be deleted or not exist. "
                "Check that ids are valid."
            )
            errors.insert(0, standard_error(OBJECT_NOT_FOUND, msg, {"ids": self.missing}))
        body: dict[str, Any] = {"status": "COMPLETE", "results": self.results}
        body.update(startedAt=started, completedAt=now)
        if not errors:
            return ok_status, body
        return 207, {**body, "numErrors": len(errors), "errors": errors}


def batch_inputs(body: Any, *, unique_ids: bool = False) -> list[Any]:
    """The ``inputs`` array, checked for size and (for id-keyed batches) duplicate ids.

    Raises:
        ApiError: 400 VALIDATION_ERROR when there is no array, more than 100 inputs, or a repeated id.
    """
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        raise validation('Invalid input JSON: "inputs" must be an array')
    if len(inputs) > MAX_INPUTS:
        raise validation(f"Batch input size {len(inputs)} exceeds the maximum of {MAX_INPUTS} inputs")
    if unique_ids:
        ids = [str(i.get("id", "")) if isinstance(i, dict) else "" for i in inputs]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise validation(f"Duplicate IDs found in batch input: [{', '.join(dupes)}]. IDs must be unique")
    return inputs


def _item(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise validation("each batch input must be an object")
    return raw


def _each(outcome: BatchOutcome, inputs: list[Any], step: Callable[[dict[str, Any]], None]) -> None:
    """Run one input; an ApiError fails that input only, naming its id or email."""
    for raw in inputs:
        context: dict[str, list[str]] = {}
        try:
            item = _item(raw)
            if "id" in item:
                context = {"ids": [str(item["id"])]}
            elif isinstance(item.get("properties"), dict) and item["properties"].get("email"):
                context = {"emails": [str(item["properties"]["email"])]}
            step(item)
        except ApiError as exc:
            outcome.fail(exc, context)


def batch_read(store: ObjectStore, otype: ObjectType, body: Any, archived: bool) -> BatchOutcome:
    outcome = BatchOutcome()
    inputs = batch_inputs(body)
    asked = body.get("properties") or None
    id_property = body.get("idProperty")
    seen: set[str] = set()
    for raw in inputs:
        key = str(_item(raw).get("id", ""))
        record = store.get(otype, key, id_property=id_property, archived=archived)
        if record is None:
            outcome.missing.append(key)
        elif record["id"] not in seen:
            seen.add(record["id"])
            outcome.results.append(render(otype, record, asked))
    return outcome


def batch_create(store: ObjectStore, otype: ObjectType, body: Any) -> BatchOutcome:
    outcome = BatchOutcome()

    def create(item: dict[str, Any]) -> None:
        props = validate_properties(otype, item.get("properties"), creating=True)
        planned = plan_associations(otype, item.get("associations"), store)
        record = store.create(otype, props)
        apply_associations(store, otype, record["id"], planned)
        outcome.results.append(render_full(record))
        outcome.written += 1

    _each(outcome, batch_inputs(body), create)
    return outcome


def batch_update(store: ObjectStore, otype: ObjectType, body: Any) -> BatchOutcome:
    outcome = BatchOutcome()

    def update(item: dict[str, Any]) -> None:
        key = str(item.get("id", ""))
        record = store.get(otype, key, id_property=item.get("idProperty"))
        if record is None:
            outcome.missing.append(key)
            return
        store.update(otype, record, validate_properties(otype, item.get("properties"), creating=False))
        outcome.results.append(render_full(record))
        outcome.written += 1

    _each(outcome, batch_inputs(body, unique_ids=True), update)
    return outcome


def batch_upsert(store: ObjectStore, otype: ObjectType, body: Any) -> BatchOutcome:
    outcome = BatchOutcome()

    def upsert(item: dict[str, Any]) -> None:
        key, id_property = str(item.get("id", "")), item.get("idProperty")
        record = store.get(otype, key, id_property=id_property)
        is_new = record is None
        if record is not None:
            store.update(otype, record, validate_properties(otype, item.get("properties"), creating=False))
        elif id_property == "email":
            raw = item.get("properties")
            merged = {**raw, "email": key} if isinstance(raw, dict) else raw
            record = store.create(otype, validate_properties(otype, merged, creating=True))
        else:
            outcome.missing.append(key)
            return
        outcome.results.append({**render_full(record), "new": is_new})
        outcome.written += 1

    _each(outcome, batch_inputs(body, unique_ids=True), upsert)
    return outcome


def batch_archive(store: ObjectStore, otype: ObjectType, body: Any) -> int:
    """Archive every input that exists (missing ids are ignored); answered 204. Returns the count."""
    count = 0
    for raw in batch_inputs(body):
        record = store.get(otype, str(_item(raw).get("id", "")))
        if record is not None:
            store.archive(otype, record)
            count += 1
    return count

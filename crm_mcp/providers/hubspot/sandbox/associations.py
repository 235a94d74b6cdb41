"""Associations: the ``associations`` input of a v3 create, and the v4 association endpoints.

A note, task or meeting is tied to its contact by an association, not a field, so a client lists a
contact's activities through ``GET /crm/v4/objects/contacts/{id}/associations/notes`` (v4 read
shape, ``limit`` ≤ 500, ``after`` paging). The association type id in a create says both the target
type and the direction; an id that does not fit, or a target that does not exist, is a 400.
"""

from __future__ import annotations

from typing import Any

from crm_mcp.providers.hubspot.sandbox.errors import ApiError, not_found, validation
from crm_mcp.providers.hubspot.sandbox.object_types import (
    ASSOCIATION_TYPES,
    OBJECT_TYPES,
    AssociationType,
    ObjectType,
    association_between,
)
from crm_mcp.providers.hubspot.sandbox.store import ObjectStore

V4_MAX_LIMIT = 500
Planned = list[tuple[str, AssociationType]]  # (target id, association type)


def plan_associations(otype: ObjectType, raw: Any, store: ObjectStore) -> Planned:
    """Check a create's ``associations`` (``PublicAssociationsForObject[]``) before anything is written.

    Raises:
        ApiError: 400 VALIDATION_ERROR for a malformed entry, an unknown or misdirected type id, or a
            target record that does not exist.
    """
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise validation("associations must be an array")
    planned: Planned = []
    for entry in raw:
        target_id = str((entry.get("to") or {}).get("id", "")) if isinstance(entry, dict) else ""
        types = entry.get("types") if isinstance(entry, dict) else None
        if not target_id or not isinstance(types, list) or not types:
            raise validation("each association needs to.id and a non-empty types array")
        for spec in types:
            planned.append((target_id, _association_type(otype, spec)))
    for target_id, assoc in planned:
        if store.get(OBJECT_TYPES[assoc.to_type], target_id) is None:
            raise ApiError(
                400,
                f"One or more associations are invalid: {assoc.to_type} {target_id} does not exist",
                "VALIDATION_ERROR",
                context={"ids": [target_id]},
            )
    return planned


def _association_type(otype: ObjectType, spec: Any) -> AssociationType:
    type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
    category = spec.get("associationCategory") if isinstance(spec, dict) else None
    assoc = ASSOCIATION_TYPES.get(type_id) if isinstance(type_id, int) else None
    if assoc is None or assoc.from_type != otype.name or category != "HUBSPOT_DEFINED":
        raise validation(
            f"{category} association type {type_id} is not valid from {otype.singular}",
            associationTypeId=[str(type_id)],
        )
    return assoc


def apply_associations(store: ObjectStore, otype: ObjectType, record_id: str, planned: Planned) -> None:
    for target_id, assoc in planned:
        back = association_between(assoc.to_type, otype.name)
        store.link(
            otype.name, record_id, assoc.to_type, target_id, assoc.type_id, back.type_id if back else 0
        )


def v4_page(
    store: ObjectStore, source: ObjectType, source_id: str, target: ObjectType, limit: int, after: str
) -> dict[str, Any]:
    """``CollectionResponseMultiAssociatedObjectWithLabelForwardPaging`` for one record.

    Raises:
        ApiError: 400 for a limit above 500 or a non-numeric cursor.
    """
    if not 1 <= limit <= V4_MAX_LIMIT:
        raise validation(f"limit must be between 1 and {V4_MAX_LIMIT}")
    if not after.isdigit():
        raise validation(f"after must be a numeric cursor, got {after!r}")
    links = store.links_of(source.name, source_id, target.name)
    start = int(after)
    page = links[start : start + limit]
    body: dict[str, Any] = {
        "results": [
            {
                "toObjectId": tid,
                "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}],
            }
            for tid, type_id in page
        ]
    }
    if start + limit < len(links):
        nxt = str(start + limit)
        body["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
    return body


def link_pair(
    store: ObjectStore, source: ObjectType, source_id: str, target: ObjectType, target_id: str
) -> AssociationType:
    """Create the default association between two existing records (either direction).

    Raises:
        ApiError: 404 when either record is missing; 400 when the pair has no association type.
    """
    if store.get(source, source_id) is None or store.get(target, target_id) is None:
        raise not_found()
    assoc = association_between(source.name, target.name)
    back = association_between(target.name, source.name)
    if assoc is None or back is None:
        raise validation(f"No association type is defined between {source.name} and {target.name}")
    store.link(source.name, source_id, target.name, target_id, assoc.type_id, back.type_id)
    return assoc

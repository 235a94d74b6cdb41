"""Records in HubSpot's read shapes (``SimplePublicObject`` and friends) and the inputs that pick them.

A read returns the properties asked for (those the object lacks come back as ``null``; names the
schema does not know are silently ignored, as the spec says) plus the create/modify stamps and
``hs_object_id``; with no ``properties`` it returns the type's default set. Write responses return
every property the record holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from crm_mcp.providers.hubspot.sandbox.object_types import ASSOCIATION_TYPES, ObjectType, resolve_type
from crm_mcp.providers.hubspot.sandbox.store import ObjectStore, Record
from crm_mcp.providers.hubspot.sandbox.values import iso_ms


def split_names(values: Iterable[str]) -> list[str]:
    """``properties=a,b&properties=c`` -> ``[a, b, c]`` (HubSpot takes both forms)."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def wanted_properties(otype: ObjectType, asked: Sequence[str] | None) -> list[str]:
    if not asked:
        return list(otype.defaults)
    known = [n for n in asked if n in otype.schema]
    return sorted(set(known) | set(otype.always))


def render(otype: ObjectType, record: Record, asked: Sequence[str] | None = None) -> dict[str, Any]:
    """The read shape: chosen properties, ISO stamps, ``archived`` (+ ``archivedAt``)."""
    values = record["props"]
    props = {name: values.get(name) for name in wanted_properties(otype, asked)}
    return _envelope(record, props)


def render_full(record: Record) -> dict[str, Any]:
    """The write-response shape: every property the record holds."""
    return _envelope(record, dict(sorted(record["props"].items())))


def _envelope(record: Record, props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record["id"],
        "properties": props,
        "createdAt": iso_ms(record["created"]),
        "updatedAt": iso_ms(record["updated"]),
        "archived": record["archived"],
    }
    if record["archived"]:
        out["archivedAt"] = iso_ms(record["archived_at"])
    return out


def with_associations(
    out: dict[str, Any], otype: ObjectType, record: Record, store: ObjectStore, asked: Sequence[str]
) -> dict[str, Any]:
    """Add the v3 ``associations`` map (``{type: {results: [{id, type}]}}``) for the types asked."""
    found: dict[str, Any] = {}
    for name in asked:
        target = resolve_type(name)
        if target is None:
            continue  # the spec: associations that do not exist are ignored
        links = store.links_of(otype.name, record["id"], target.name)
        if links:
            results = [{"id": tid, "type": ASSOCIATION_TYPES[type_id].name} for tid, type_id in links]
            found[target.name] = {"results": results}
    if found:
        out["associations"] = found
    return out

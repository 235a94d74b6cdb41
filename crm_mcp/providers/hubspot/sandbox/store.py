"""The records of the simulated portal: objects by type, the email index, and associations.

Rules that hold whatever endpoint wrote a record live here — ids are numeric strings from one
counter, ``hs_object_id``/create/modify stamps are kept by the store and not by the client, a live
contact's email is unique (case-insensitive) and archiving frees it — so a batch upsert and a
single create cannot disagree. Every change is reported to an optional listener, which is how the
webhook recorder learns what HubSpot would have emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm_mcp.providers.hubspot.sandbox.errors import CONFLICT, ApiError
from crm_mcp.providers.hubspot.sandbox.object_types import OBJECT_TYPES, ObjectType
from crm_mcp.providers.hubspot.sandbox.values import iso_ms

Record = dict[str, Any]
Listener = Callable[[str, ObjectType, Record, dict[str, str | None]], None]
FIRST_ID = 1001


def conflict(existing_id: str) -> ApiError:
    return ApiError(409, f"Contact already exists. Existing ID: {existing_id}", CONFLICT)


class ObjectStore:
    """All records of the portal; callers hold the sandbox lock around every call."""

    def __init__(self, clock: Callable[[], float], listener: Listener | None = None) -> None:
        self._clock = clock
        self.listener = listener
        self.tables: dict[str, dict[str, Record]] = {name: {} for name in OBJECT_TYPES}
        self._emails: dict[str, str] = {}
        # (from type, from id, to type) -> {to id: association type id}, in association order
        self._links: dict[tuple[str, str, str], dict[str, int]] = {}
        self._next_id = FIRST_ID

    def clear(self) -> None:
        for table in self.tables.values():
            table.clear()
        self._emails.clear()
        self._links.clear()
        self._next_id = FIRST_ID

    # ------------------------------------------------------------------ reads
    def live(self, otype: ObjectType) -> list[Record]:
        """Unarchived records in id order (ids only grow, so insertion order is id order)."""
        return [r for r in self.tables[otype.name].values() if not r["archived"]]

    def archived(self, otype: ObjectType) -> list[Record]:
        return [r for r in self.tables[otype.name].values() if r["archived"]]

    def get(
        self, otype: ObjectType, key: str, *, id_property: str | None = None, archived: bool = False
    ) -> Record | None:
        """By record id, or by email when ``id_property`` is ``email``; None when absent.

        Raises:
            ApiError: 400 when ``id_property`` is not a unique property of the type.
        """
        if id_property in (None, "", "hs_object_id"):
            record = self.tables[otype.name].get(key)
        elif id_property == "email" and otype.name == "contacts":
            found = self._emails.get(key.strip().lower())
            record = self.tables["contacts"].get(found) if found else None
        else:
            raise ApiError(400, f"{id_property} is not a unique property of {otype.name}", "VALIDATION_ERROR")
        if record is None or record["archived"] != archived:
            return None
        return record

    def email_owner(self, email: str) -> str | None:
        return self._emails.get(email.strip().lower())

    # ------------------------------------------------------------------ writes
    def create(self, otype: ObjectType, props: dict[str, str | None]) -> Record:
        """Store a new record from validated properties.

        Raises:
            ApiError: 409 CONFLICT when a live contact already has the email.
        """
        email = props.get("email") if otype.name == "contacts" else None
        if email and (owner := self.email_owner(email)):
            raise conflict(owner)
        now = self._clock()
        rid = str(self._next_id)
        self._next_id += 1
        values = {k: v for k, v in props.items() if v is not None}
        values.update(
            {otype.created_prop: iso_ms(now), otype.modified_prop: iso_ms(now), "hs_object_id": rid}
        )
        record: Record = {"id": rid, "props": values, "created": now, "updated": now, "archived": False}
        self.tables[otype.name][rid] = record
        if email:
            self._emails[email] = rid
        self._notify("creation", otype, record, dict(values))
        return record

    def update(
        self, otype: ObjectType, record: Record, props: dict[str, str | None]
    ) -> dict[str, str | None]:
        """Apply validated properties; returns what actually changed (None = cleared).

        Raises:
            ApiError: 409 CONFLICT when the new email belongs to another live contact.
        """
        values: dict[str, Any] = record["props"]
        changed = {k: v for k, v in props.items() if values.get(k) != v}
        if otype.name == "contacts" and "email" in changed:
            self._move_email(record["id"], values.get("email"), changed["email"])
        for key, value in changed.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        now = self._clock()
        record["updated"] = now
        values[otype.modified_prop] = iso_ms(now)
        if changed:
            self._notify("propertyChange", otype, record, changed)
        return changed

    def _move_email(self, rid: str, old: str | None, new: str | None) -> None:
        if new and (owner := self.email_owner(new)) and owner != rid:
            raise conflict(owner)
        if old:
            self._emails.pop(old, None)
        if new:
            self._emails[new] = rid

    def archive(self, otype: ObjectType, record: Record) -> None:
        if record["archived"]:
            return
        now = self._clock()
        record.update(archived=True, archived_at=now, updated=now)
        email = record["props"].get("email")
        if otype.name == "contacts" and email and self._emails.get(email) == record["id"]:
            del self._emails[email]
        self._notify("deletion", otype, record, {})

    def _notify(self, kind: str, otype: ObjectType, record: Record, changed: dict[str, str | None]) -> None:
        if self.listener is not None:
            self.listener(kind, otype, record, changed)

    # ------------------------------------------------------------------ associations
    def link(
        self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int, back_id: int
    ) -> None:
        """Associations are stored both ways, as HubSpot reports them from either side."""
        self._links.setdefault((from_type, from_id, to_type), {})[to_id] = type_id
        self._links.setdefault((to_type, to_id, from_type), {})[from_id] = back_id

    def unlink(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self._links.get((from_type, from_id, to_type), {}).pop(to_id, None)
        self._links.get((to_type, to_id, from_type), {}).pop(from_id, None)

    def links_of(self, from_type: str, from_id: str, to_type: str) -> list[tuple[str, int]]:
        """(to id, type id) of live records associated with one record, in association order."""
        table = self.tables[to_type]
        found = self._links.get((from_type, from_id, to_type), {})
        return [
            (tid, type_id) for tid, type_id in found.items() if tid in table and not table[tid]["archived"]
        ]

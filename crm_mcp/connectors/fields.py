"""Custom fields by logical name: resolve `appointment_status` & co. to a CRM's own keys and values.

The engine writes custom fields by logical name (`connectors.base.LOGICAL_FIELDS`) with neutral
values; each provider's spec says which key holds each one. `FieldResolver` turns such a mapping
into the CRM's keys (or ids) and picklist options, from the field list it reads once per
connection (refreshed when a key is missing, at most every `refresh_s`). Keys the CRM does not
have, and values its picklist does not offer, are skipped: a booking must not die because an
optional status field is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .base import FieldSchema

log = logging.getLogger(__name__)

# Words a picklist may use for our neutral values (matched case-insensitively, first hit wins).
SYNONYMS: dict[str, list[str]] = {
    "scheduled": ["scheduled", "new", "booked"],
    "confirmed": ["confirmed", "scheduled"],
    "cancelled": ["cancelled", "canceled"],
    "completed": ["completed", "showed", "done"],
    "no_show": ["no_show", "no show", "noshow", "no-show"],
}


def pick_option(value: Any, options: list[str]) -> str | None:
    """The picklist option for a value, or None when the CRM's list has nothing that fits."""
    text = str(value).lower()
    wanted = [text, *SYNONYMS.get(text, [])]
    lowered = {o.lower(): o for o in options}
    return next((lowered[w] for w in wanted if w in lowered), None)


class FieldResolver:
    """Logical name or CRM key -> (the key to write, its picklist options), per connection.

    `load` lists the CRM's custom fields; `write_key` picks what the write takes (the field id
    where the CRM addresses fields by id, else its key).
    """

    def __init__(
        self,
        logical: Mapping[str, str],
        load: Callable[[], Awaitable[list[FieldSchema]]],
        *,
        write_key: Callable[[FieldSchema], str | None] = lambda f: f.id or f.key,
        refresh_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logical = dict(logical)
        self._load = load
        self._write_key = write_key
        self._refresh_s = refresh_s
        self._clock = clock
        self._fields: dict[str, tuple[str, list[str]]] | None = None
        self._loaded_at = 0.0

    async def _table(self, *, refresh: bool = False) -> dict[str, tuple[str, list[str]]]:
        if self._fields is None or refresh:
            table: dict[str, tuple[str, list[str]]] = {}
            for f in await self._load():
                target = self._write_key(f)
                if target:
                    # the key, its short form (`contact.budget` -> `budget`) and the id all name it
                    for name in {f.key, f.key.split(".", 1)[-1], f.id} - {None}:
                        table.setdefault(str(name), (target, f.options))
            self._fields, self._loaded_at = table, self._clock()
        return self._fields

    async def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values keyed for the CRM; unknown fields and unfit picklist values are left out."""
        wanted = {self._logical.get(k, k): (k, v) for k, v in values.items() if v is not None}
        if not wanted:
            return {}
        table = await self._table()
        if set(wanted) - set(table) and self._clock() - self._loaded_at >= self._refresh_s:
            table = await self._table(refresh=True)  # a field may have been added since
        out: dict[str, Any] = {}
        for key, (name, value) in wanted.items():
            if key not in table:
                log.info("custom field %s (%s) does not exist in the CRM; skipped", name, key)
                continue
            target, options = table[key]
            if options:
                picked = pick_option(value, options)
                if picked is None:
                    log.info("custom field %s has no option for %r; skipped", name, value)
                    continue
                value = picked
            out[target] = value
        return out

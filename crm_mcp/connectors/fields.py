"""Custom fields by logical name: resolve `appointment_status` & co. to a CRM's own keys and values.

The engine writes custom fields by logical name (`connectors.base.LOGICAL_FIELDS`) with neutral
values; each provider's spec says which key holds each one. `FieldResolver` turns such a mapping
into the CRM's keys (or ids) and picklist options, from the field list it reads once per
connection: never per operation. Concurrent first uses share one read. The list is read again on
a schedule (the first use after `refresh_s`), and when the CRM refuses a write because of a field
(`write`: deleted, renamed, its options changed since we read it), at most every
`min_reload_s`. Keys the CRM does not have, and values its picklist does not offer, are
skipped: a booking must not die because an optional status field is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from .base import FieldSchema

log = logging.getLogger(__name__)
T = TypeVar("T")

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
        min_reload_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logical = dict(logical)
        self._load = load
        self._write_key = write_key
        self._refresh_s = refresh_s
        self._min_reload_s = min_reload_s
        self._clock = clock
        self._fields: dict[str, tuple[str, list[str]]] | None = None
        self._loaded_at = 0.0
        self._generation = 0  # how many times the list was read: a reload since is a new table
        self._lock = asyncio.Lock()  # one read at a time: concurrent first uses share it

    @property
    def loads(self) -> int:
        """How many times the field list was read (for tests and benchmarks)."""
        return self._generation

    async def _table(self) -> dict[str, tuple[str, list[str]]]:
        fields = self._fields
        if fields is not None and self._clock() - self._loaded_at < self._refresh_s:
            return fields
        async with self._lock:
            if self._fields is None or self._clock() - self._loaded_at >= self._refresh_s:
                await self._reload()
            assert self._fields is not None
            return self._fields

    async def _reload(self) -> None:
        """Read the field list (the caller holds the lock)."""
        table: dict[str, tuple[str, list[str]]] = {}
        for f in await self._load():
            target = self._write_key(f)
            if target:
                # the key, its short form (`contact.budget` -> `budget`) and the id all name it
                for name in {f.key, f.key.split(".", 1)[-1], f.id} - {None}:
                    table.setdefault(str(name), (target, f.options))
        self._fields, self._loaded_at = table, self._clock()
        self._generation += 1

    async def _reload_after(self, generation: int) -> bool:
        """The CRM refused a write resolved with table `generation`: read the list again, unless
        another caller already did since (then just resolve again). False when the list was read
        less than `min_reload_s` ago and still names the field: reading it again would not help."""
        async with self._lock:
            if self._generation != generation:
                return True
            if self._clock() - self._loaded_at < self._min_reload_s:
                return False
            await self._reload()
            return True

    async def write(
        self,
        values: Mapping[str, Any],
        send: Callable[[dict[str, Any]], Awaitable[T]],
        *,
        field_error: Callable[[Exception], bool],
    ) -> T:
        """`send(resolved values)`; when the CRM refuses it because of a custom field
        (`field_error(exc)`, e.g. a field deleted since we read the list), read the list again
        and send once more with the values resolved afresh (a field that is gone is then left
        out).

        Raises:
            whatever `send` raises, when it is not a field error or a reload cannot help.
        """
        resolved = await self.resolve(values)
        generation = self._generation
        try:
            return await send(resolved)
        except Exception as exc:
            if not resolved or not field_error(exc) or not await self._reload_after(generation):
                raise
            log.info("the CRM refused a custom field; its field list was read again")
        return await send(await self.resolve(values))

    async def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values keyed for the CRM; unknown fields and unfit picklist values are left out."""
        wanted = {self._logical.get(k, k): (k, v) for k, v in values.items() if v is not None}
        if not wanted:
            return {}
        table = await self._table()
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

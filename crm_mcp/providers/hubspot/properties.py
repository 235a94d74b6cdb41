"""The portal's contact properties: what custom fields resolve to, and how their values are written.

HubSpot addresses properties by name and takes every value as a string whose form depends on the
property's type (a `date` wants a day, a `datetime` an instant, an `enumeration` one of its option
values). One `GET /crm/v3/properties/contacts` gives all of it — types, option lists, which
properties are HubSpot's and which the portal's own — and is read once per connection by the
shared `FieldResolver` (again when a missing field may have been added since).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from crm_mcp.connectors.base import FieldSchema
from crm_mcp.connectors.fields import FieldResolver

from . import wire
from .objects import mapped, results
from .spec import HUBSPOT_SPEC, LEAD_STATUS_TO_WIRE, PROPERTIES

Call = Callable[..., Awaitable[Any]]
LEAD_STATUS_KEY = HUBSPOT_SPEC.logical_fields["lead_status"]


class ContactProperties:
    """The contact property schema of one portal, loaded through a connector's `_call`."""

    def __init__(self, call: Call) -> None:
        self._call = call
        self._resolver = FieldResolver(HUBSPOT_SPEC.logical_fields, self._writable, write_key=lambda f: f.key)
        self._kinds: dict[str, str] = {}  # property name -> HubSpot type
        self.standard: list[FieldSchema] | None = None  # None until loaded
        self.custom: list[FieldSchema] = []

    async def load(self) -> list[dict[str, Any]]:
        """Every contact property of the portal (refreshes the type, standard and custom lists)."""
        rows = results(await self._call("GET", f"{PROPERTIES}/contacts", params={"archived": "false"}))
        self._kinds = {str(p.get("name")): str(p.get("type") or "string") for p in rows}
        fields = [mapped(wire.field_from_wire, p) for p in rows]
        self.standard = [f for f in fields if not f.custom]
        self.custom = [f for f in fields if f.custom]
        return rows

    async def _writable(self) -> list[FieldSchema]:
        return [mapped(wire.field_from_wire, p) for p in await self.load() if wire.writable(p)]

    async def resolve(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Custom fields (logical names or property names, neutral values) as property strings.

        Properties the portal lacks, read-only ones and picklist values it does not offer are
        left out (the resolver logs them): an optional field must not fail a booking.
        """
        translated = dict(values)
        for key, value in values.items():
            if HUBSPOT_SPEC.logical_fields.get(key, key) == LEAD_STATUS_KEY:  # neutral -> option
                translated[key] = LEAD_STATUS_TO_WIRE.get(str(value).lower(), value)
        return wire.properties_to_wire(await self._resolver.resolve(translated), self._kinds)

    def read_names(self) -> list[str]:
        """The properties a contact read asks for: standard, logical fields, the portal's own."""
        names = [*wire.CONTACT_PROPERTIES.values(), *wire.CONTACT_STAMPS]
        names += [*HUBSPOT_SPEC.logical_fields.values(), *(f.key for f in self.custom)]
        return list(dict.fromkeys(names))

    def standard_fields(self) -> list[FieldSchema]:
        """The portal's standard properties once loaded, else the core ones HubSpot always has."""
        if self.standard is None:
            return [FieldSchema(key=k, label=label, type=t) for k, label, t in wire.CORE_CONTACT_FIELDS]
        return list(self.standard)

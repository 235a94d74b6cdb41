"""The CRM object calls HubSpot's activities share: create with an association, read with the
contact it belongs to, and list a contact's activities of one type.

Notes, tasks and meetings are objects of their own in HubSpot (`/crm/v3/objects/{type}`), tied to
a contact by an association rather than a field. Listing a contact's activities therefore costs a
v4 association read (`GET /crm/v4/objects/contacts/{id}/associations/{type}`, up to 500 ids a
page) and then batch reads of at most 100 ids each — never one call per activity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from crm_mcp.errors import UpstreamUnavailableError

from .spec import ASSOCIATIONS, ASSOCIATIONS_PAGE, BATCH_MAX, OBJECTS
from .wire import associated_ids, association

Call = Callable[..., Awaitable[Any]]
T = TypeVar("T")


def mapped(fn: Callable[..., T], *args: Any) -> T:
    """Run a wire->neutral mapper; a provider contract surprise becomes a typed, retryable error."""
    try:
        return fn(*args)
    except (ValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise UpstreamUnavailableError(
            f"hubspot: unexpected response shape ({exc.__class__.__name__})", provider="hubspot"
        ) from None


def results(body: Any) -> list[dict[str, Any]]:
    """The `results` array of a collection or batch answer.

    Raises:
        UpstreamUnavailableError: the answer has no `results` array.
    """
    rows = body.get("results") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise UpstreamUnavailableError("hubspot: response has no 'results' array", provider="hubspot")
    return [r for r in rows if isinstance(r, dict)]


class ObjectCalls:
    """CRM object requests over one connector's `_call` (the ResilientClient underneath)."""

    def __init__(self, call: Call) -> None:
        self._call = call

    async def create(
        self, object_type: str, properties: Mapping[str, str], contact_id: str, type_id: int
    ) -> dict[str, Any]:
        """POST a new object tied to its contact (not idempotent: HubSpot has no natural key here)."""
        body = {"properties": dict(properties), "associations": association(contact_id, type_id)}
        data = await self._call("POST", f"{OBJECTS}/{object_type}", json=body)
        return _object(data)

    async def read(self, object_type: str, object_id: str, properties: Sequence[str]) -> dict[str, Any]:
        """GET one object with its contact associations (`?associations=contacts`)."""
        params = {"properties": ",".join(properties), "associations": "contacts"}
        return _object(await self._call("GET", f"{OBJECTS}/{object_type}/{object_id}", params=params))

    async def update(self, object_type: str, object_id: str, properties: Mapping[str, str]) -> dict[str, Any]:
        """PATCH absolute values: sending the same change twice has the same effect (idempotent)."""
        path = f"{OBJECTS}/{object_type}/{object_id}"
        data = await self._call("PATCH", path, json={"properties": dict(properties)}, idempotent=True)
        return _object(data)

    async def associated(self, contact_id: str, object_type: str) -> list[str]:
        """Ids of every `object_type` record associated with the contact, following `after`."""
        ids: list[str] = []
        after: str | None = None
        path = f"{ASSOCIATIONS}/contacts/{contact_id}/associations/{object_type}"
        while True:
            params: dict[str, Any] = {"limit": ASSOCIATIONS_PAGE}
            if after:
                params["after"] = after
            page = await self._call("GET", path, params=params)
            if not isinstance(page, dict):
                raise UpstreamUnavailableError(
                    "hubspot: association page is not an object", provider="hubspot"
                )
            found, after = associated_ids(page)
            ids += [i for i in found if i not in ids]
            if not after:
                return ids

    async def batch_read(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Objects by id, 100 per call; ids that no longer exist (207 OBJECT_NOT_FOUND) are left out."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), BATCH_MAX):
            chunk = ids[start : start + BATCH_MAX]
            body = {
                "inputs": [{"id": i} for i in chunk],
                "properties": list(properties),
                "propertiesWithHistory": [],
            }
            data = await self._call("POST", f"{OBJECTS}/{object_type}/batch/read", json=body, idempotent=True)
            out += results(data)
        order = {i: n for n, i in enumerate(ids)}
        return sorted(out, key=lambda r: order.get(str(r.get("id")), len(order)))

    async def for_contact(
        self, contact_id: str, object_type: str, properties: Sequence[str]
    ) -> list[dict[str, Any]]:
        ids = await self.associated(contact_id, object_type)
        return await self.batch_read(object_type, ids, properties) if ids else []


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or "id" not in data:
        raise UpstreamUnavailableError("hubspot: response is not a CRM object", provider="hubspot")
    return data

"""Handlers outside the object CRUD: the properties schema, v4 associations and account details.

Paths and shapes from the official specs: ``GET /crm/v3/properties/{objectType}`` answers
``CollectionResponsePropertyNoPaging`` (no paging), the v4 association endpoints answer
``CollectionResponseMultiAssociatedObjectWithLabelForwardPaging`` (read), 200
``BatchResponsePublicDefaultAssociation`` (default PUT), 201 ``LabelsBetweenObjectPair``
(labelled PUT) and 204 (DELETE), and ``GET /account-info/v3/details`` answers
``PortalInformationResponse``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request

from crm_mcp.providers.hubspot.sandbox.associations import link_pair, v4_page
from crm_mcp.providers.hubspot.sandbox.config import HubSpotSandboxConfig
from crm_mcp.providers.hubspot.sandbox.errors import ApiError, validation
from crm_mcp.providers.hubspot.sandbox.object_types import (
    ASSOCIATION_TYPES,
    ObjectType,
    association_between,
    resolve_type,
)
from crm_mcp.providers.hubspot.sandbox.store import ObjectStore
from crm_mcp.providers.hubspot.sandbox.values import iso_ms

Result = tuple[int, Any]


def _object_type(name: str) -> ObjectType:
    """HubSpot's answer to a type it does not know is a 400, not a 404.

    Raises:
        ApiError: 400 VALIDATION_ERROR.
    """
    otype = resolve_type(name)
    if otype is None:
        raise validation(f"Unable to infer object type from: {name}")
    return otype


class MetaHandlers:
    def __init__(self, store: ObjectStore, config: HubSpotSandboxConfig) -> None:
        self.store = store
        self.config = config

    @property
    def clock(self) -> Callable[[], float]:
        return self.config.clock

    # ------------------------------------------------------------------ properties
    def list_properties(self, req: Request, body: Any) -> Result:
        otype = _object_type(req.path_params["objectType"])
        archived = req.query_params.get("archived", "false").lower() == "true"
        results = [] if archived else [dict(p) for p in otype.schema.values()]
        return 200, {"results": results}

    def get_property(self, req: Request, body: Any) -> Result:
        otype = _object_type(req.path_params["objectType"])
        prop = otype.schema.get(req.path_params["propertyName"])
        if prop is None:
            raise ApiError(
                404, f"Property {req.path_params['propertyName']} does not exist", "OBJECT_NOT_FOUND"
            )
        return 200, dict(prop)

    # ------------------------------------------------------------------ associations v4
    def _pair(self, req: Request) -> tuple[ObjectType, str, ObjectType]:
        p = req.path_params
        source = _object_type(p.get("objectType") or p["fromObjectType"])
        return source, p.get("objectId") or p["fromObjectId"], _object_type(p["toObjectType"])

    def list_associations(self, req: Request, body: Any) -> Result:
        source, source_id, target = self._pair(req)
        limit = req.query_params.get("limit", "500")
        if not limit.isdigit():
            raise validation(f"limit must be a number, got {limit!r}")
        after = req.query_params.get("after") or "0"
        return 200, v4_page(self.store, source, source_id, target, int(limit), after)

    def associate_default(self, req: Request, body: Any) -> Result:
        source, source_id, target = self._pair(req)
        target_id = req.path_params["toObjectId"]
        started = iso_ms(self.clock())
        assoc = link_pair(self.store, source, source_id, target, target_id)
        results = [_default_result(source_id, target_id, assoc.type_id)]
        back = association_between(target.name, source.name)
        if back is not None:
            results.append(_default_result(target_id, source_id, back.type_id))
        return 200, {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso_ms(self.clock()),
        }

    def associate_labelled(self, req: Request, body: Any) -> Result:
        source, source_id, target = self._pair(req)
        target_id = req.path_params["toObjectId"]
        if not isinstance(body, list) or not body:
            raise validation("Invalid input JSON: expected an array of AssociationSpec")
        for spec in body:
            type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
            assoc = ASSOCIATION_TYPES.get(type_id) if isinstance(type_id, int) else None
            if assoc is None or (assoc.from_type, assoc.to_type) != (source.name, target.name):
                raise validation(f"Invalid association type {spec!r} from {source.name} to {target.name}")
        link_pair(self.store, source, source_id, target, target_id)
        return 201, {
            "fromObjectTypeId": source.type_id,
            "fromObjectId": source_id,
            "toObjectTypeId": target.type_id,
            "toObjectId": target_id,
            "labels": [],
        }

    def remove_association(self, req: Request, body: Any) -> Result:
        source, source_id, target = self._pair(req)
        self.store.unlink(source.name, source_id, target.name, req.path_params["toObjectId"])
        return 204, None

    # ------------------------------------------------------------------ account
    def account_details(self, req: Request, body: Any) -> Result:
        tz = ZoneInfo(self.config.time_zone)
        offset = datetime.fromtimestamp(self.clock(), tz).utcoffset()
        offset_ms = int(offset.total_seconds() * 1000) if offset else 0
        sign, minutes = ("-" if offset_ms < 0 else "+"), abs(offset_ms) // 60_000
        return 200, {
            "portalId": self.config.portal_id,
            "accountType": "STANDARD",
            "timeZone": self.config.time_zone,
            "companyCurrency": "USD",
            "additionalCurrencies": [],
            "utcOffset": f"{sign}{minutes // 60:02d}:{minutes % 60:02d}",
            "utcOffsetMilliseconds": offset_ms,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }


def _default_result(from_id: str, to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "from": {"id": from_id},
        "to": {"id": to_id},
        "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
    }

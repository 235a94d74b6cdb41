"""The HubSpot API of the simulated portal: one table of every route, and how a handler becomes one.

Paths are the official specs' own (``/crm/v3/objects/contacts/{contactId}``, …), so the stats
count requests under the templates HubSpot documents. Each route carries a ``RouteInfo`` saying
what kind of call it is (read, write, search, batch) and on which object type, which is what the
rate limiter and the benchmarks' counters need. Handlers run under the sandbox lock; an
``ApiError`` becomes HubSpot's ``Error`` body with the request's correlation id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from crm_mcp.providers.hubspot.sandbox.config import HubSpotSandboxConfig
from crm_mcp.providers.hubspot.sandbox.errors import ApiError, validation
from crm_mcp.providers.hubspot.sandbox.meta_routes import MetaHandlers
from crm_mcp.providers.hubspot.sandbox.object_routes import ObjectHandlers
from crm_mcp.providers.hubspot.sandbox.object_types import OBJECT_TYPES, ObjectType
from crm_mcp.providers.hubspot.sandbox.stats import UNMATCHED, CallKind, RouteInfo, Stats
from crm_mcp.providers.hubspot.sandbox.store import ObjectStore

Handler = Callable[[Request, Any], tuple[int, Any]]
TypedHandler = Callable[[Request, Any, ObjectType], tuple[int, Any]]

_V4 = "/crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}"
_V4_DEFAULT = (
    "/crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}"
)


def _parse_json(raw: bytes) -> Any:
    """The request body, or HubSpot's "Invalid input JSON" 400.

    Raises:
        ApiError: 400 VALIDATION_ERROR for a body that is not JSON.
    """
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        raise validation(f"Invalid input JSON on line {line}, column {col}: {exc}") from None


def _bind(fn: TypedHandler, otype: ObjectType) -> Handler:
    def handler(req: Request, body: Any) -> tuple[int, Any]:
        return fn(req, body, otype)

    return handler


class HubSpotApi:
    """The route table over one store, with a ``RouteInfo`` per route for limits and stats."""

    def __init__(
        self, store: ObjectStore, stats: Stats, config: HubSpotSandboxConfig, lock: threading.RLock
    ) -> None:
        self.lock = lock
        self.objects = ObjectHandlers(store, stats, lambda: config.clock())
        self.meta = MetaHandlers(store, config)
        self.table: list[tuple[Route, RouteInfo]] = [*self._object_routes(), *self._meta_routes()]

    def routes(self) -> list[Route]:
        return [route for route, _ in self.table]

    def match(self, scope: Scope) -> RouteInfo:
        for route, info in self.table:
            if route.matches(scope)[0] == Match.FULL:
                return info
        return UNMATCHED

    # ------------------------------------------------------------------ table
    def _route(
        self, method: str, path: str, fn: Handler, kind: CallKind, object_type: str | None = None
    ) -> tuple[Route, RouteInfo]:
        info = RouteInfo(f"{method} {path}", kind, object_type)
        return Route(path, self._endpoint(fn), methods=[method]), info

    def _object_routes(self) -> list[tuple[Route, RouteInfo]]:
        h = self.objects
        out = []
        for t in OBJECT_TYPES.values():
            base, one = f"/crm/v3/objects/{t.name}", f"/crm/v3/objects/{t.name}/{{{t.id_param}}}"
            rows: list[tuple[str, str, TypedHandler, CallKind]] = [
                ("GET", base, h.list_page, "read"),
                ("POST", base, h.create, "write"),
                ("POST", base + "/search", h.search, "search"),
                ("POST", base + "/batch/read", h.batch_read, "batch_read"),
                ("POST", base + "/batch/create", h.batch_create, "batch_write"),
                ("POST", base + "/batch/update", h.batch_update, "batch_write"),
                ("POST", base + "/batch/upsert", h.batch_upsert, "batch_write"),
                ("POST", base + "/batch/archive", h.batch_archive, "batch_write"),
                ("GET", one, h.read, "read"),
                ("PATCH", one, h.update, "write"),
                ("DELETE", one, h.archive, "write"),
            ]
            out += [self._route(m, p, _bind(fn, t), kind, t.name) for m, p, fn, kind in rows]
        return out

    def _meta_routes(self) -> list[tuple[Route, RouteInfo]]:
        m = self.meta
        return [
            self._route("GET", "/crm/v3/properties/{objectType}", m.list_properties, "meta"),
            self._route("GET", "/crm/v3/properties/{objectType}/{propertyName}", m.get_property, "meta"),
            self._route("GET", _V4, m.list_associations, "read", "associations"),
            self._route("PUT", _V4_DEFAULT, m.associate_default, "write", "associations"),
            self._route("PUT", _V4 + "/{toObjectId}", m.associate_labelled, "write", "associations"),
            self._route("DELETE", _V4 + "/{toObjectId}", m.remove_association, "write", "associations"),
            self._route("GET", "/account-info/v3/details", m.account_details, "meta"),
        ]

    def _endpoint(self, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = _parse_json(raw)
                with self.lock:
                    status, payload = fn(request, body)
            except ApiError as exc:
                return JSONResponse(exc.body(request.state.correlation_id), status_code=exc.status)
            if status == 204:
                return Response(status_code=204)
            return JSONResponse(payload, status_code=status)

        return endpoint

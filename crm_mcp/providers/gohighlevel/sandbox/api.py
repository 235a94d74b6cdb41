"""The GoHighLevel API of one simulated location: every route, and how a handler becomes one.

Handlers live with their resource (:mod:`.contact_routes`,
:mod:`.calendar_routes`); this module lists them all in one table, in the order
Starlette matches them, and turns a handler's ``(status, body)`` or ``ApiError`` into a response.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_mcp.providers.gohighlevel.sandbox.calendar_routes import CalendarRoutes
from crm_mcp.providers.gohighlevel.sandbox.contact_routes import ContactRoutes
from crm_mcp.providers.gohighlevel.sandbox.contact_store import render_contact
from crm_mcp.providers.gohighlevel.sandbox.schemas import ApiError

Handler = Callable[[Request, Any], tuple[int, Any]]


class GHLApi(ContactRoutes, CalendarRoutes):
    """The location's data and the GHL endpoints over it (one ``Route`` per method and path)."""

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "contacts": [render_contact(c) for c in self.contacts.values()],
                "appointments": [self._event_dto(e) for e in self.events.values()],
                "notes": [dict(n) for n in self.notes.values()],
                "tasks": [dict(t) for t in self.tasks.values()],
            }

    # ------------------------------------------------------------------ routing
    def _endpoint(self, fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            body: Any = None
            try:
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise ApiError(400, "Unexpected token in JSON body", "Bad Request") from None
                with self.lock:
                    status, payload = fn(request, body)
            except ApiError as exc:
                return JSONResponse(exc.body, status_code=exc.status)
            return JSONResponse(payload, status_code=status)

        return endpoint

    def routes(self) -> list[Route]:
        def r(path: str, fn: Handler, method: str) -> Route:
            return Route(path, self._endpoint(fn), methods=[method])

        c, cid = "/contacts", "/contacts/{contactId}"
        return [
            r(c + "/", self.create_contact, "POST"),
            r(c, self.create_contact, "POST"),
            r(c + "/upsert", self.upsert_contact, "POST"),
            r(c + "/search", self.search, "POST"),
            r(c + "/search/duplicate", self.duplicate, "GET"),
            r(cid, self.get_contact, "GET"),
            r(cid, self.update_contact, "PUT"),
            r(cid, self.delete_contact, "DELETE"),
            r(cid + "/tags", self.add_tags, "POST"),
            r(cid + "/tags", self.remove_tags, "DELETE"),
            r(cid + "/notes", self.list_notes, "GET"),
            r(cid + "/notes", self.create_note, "POST"),
            r(cid + "/notes/{id}", self.get_note, "GET"),
            r(cid + "/notes/{id}", self.update_note, "PUT"),
            r(cid + "/notes/{id}", self.delete_note, "DELETE"),
            r(cid + "/tasks", self.list_tasks, "GET"),
            r(cid + "/tasks", self.create_task, "POST"),
            r(cid + "/tasks/{taskId}", self.get_task, "GET"),
            r(cid + "/tasks/{taskId}", self.update_task, "PUT"),
            r(cid + "/tasks/{taskId}/completed", self.complete_task, "PUT"),
            r(cid + "/tasks/{taskId}", self.delete_task, "DELETE"),
            r(cid + "/appointments", self.contact_appointments, "GET"),
            r("/locations/{locationId}", self.get_location, "GET"),
            r("/locations/{locationId}/customFields", self.list_custom_fields, "GET"),
            r("/locations/{locationId}/customFields/{id}", self.get_custom_field, "GET"),
            r("/calendars/", self.list_calendars, "GET"),
            r("/calendars", self.list_calendars, "GET"),
            r("/calendars/events/appointments", self.create_appointment, "POST"),
            r("/calendars/events/appointments/{eventId}", self.update_appointment, "PUT"),
            r("/calendars/events/appointments/{eventId}", self.get_event, "GET"),
            r("/calendars/events", self.list_events, "GET"),
            r("/calendars/events/{eventId}", self.delete_event, "DELETE"),
            r("/calendars/{calendarId}/free-slots", self.free_slots, "GET"),
        ]

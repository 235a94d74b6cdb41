"""A faithful local fake of the GoHighLevel (LeadConnector) API v2, served as a Starlette app.

Connectors and the sync engine are tested against this instead of patching the network, so it
reproduces what a client has to cope with: the ``Version`` header per service, NestJS error bodies,
201 on contact writes but 200 on appointments, ``succeded`` (sic), DELETE with a JSON body, 422 on
unknown body properties, custom fields written as ``{id|key, field_value}`` but read as
``{id, value}``, offset timestamps on appointments, per-location burst and daily rate limits with the
five ``X-RateLimit-*`` headers, and switchable faults (see :mod:`crm_mcp.sandbox.faults`).

Business rules live in :mod:`crm_mcp.sandbox.ghl_store`; this module is the HTTP edge: the request
pipeline (faults, auth, rate limits, version), the routes and the ``/_sandbox`` control plane.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_mcp.sandbox import ghl_store as st
from crm_mcp.sandbox.faults import FaultInjector, apply_fault
from crm_mcp.sandbox.ghl_oauth import GHLOAuth
from crm_mcp.sandbox.ghl_store import ApiError, RateLimiter, Stats, validate

SANDBOX_TOKEN = "sandbox-ghl-token"  # noqa: S105 - a published test credential
SANDBOX_LOCATION_ID = "SbxLoc00000000000001"
SANDBOX_CALENDAR_ID = "SbxCal00000000000001"
SANDBOX_USER_ID = "SbxUsr00000000000001"
SANDBOX_TIMEZONE = "America/New_York"

CONTACTS_VERSION = "2021-07-28"
CALENDARS_VERSION = "2021-04-15"


@dataclass
class GHLSandboxConfig:
    token: str = SANDBOX_TOKEN
    location_id: str = SANDBOX_LOCATION_ID
    burst_max: int = 100
    burst_interval_ms: int = 10_000
    daily_limit: int = 200_000
    latency_s: float = 0.0
    seed: int = 0


def _nest(status: int, message: str, error: str | None = None) -> bytes:
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error:
        body["error"] = error
    return json.dumps(body).encode()


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    head = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head + headers})
    await send({"type": "http.response.body", "body": body})


async def _buffered(receive: Receive) -> Receive:
    """Drain the request body now and hand back a ``receive`` that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            first: Message = message
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            break
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


class _Pipeline:
    """Outer ASGI layer: latency, faults, auth, rate limit, Version header, stats, headers."""

    def __init__(self, app: ASGIApp, sandbox: GHLSandbox) -> None:
        self.app = app
        self.sb = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(("/_sandbox", "/oauth/")):
            await self.app(scope, receive, send)
            return
        try:
            await self._api_request(scope, receive, send, path)
        except asyncio.CancelledError:
            # Server shutdown while a slow/timeout fault sleeps: end quietly instead of letting
            # uvicorn print a traceback for a request nobody is waiting for any more.
            return

    async def _api_request(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        sb, cfg = self.sb, self.sb.config
        route = sb.route_template(scope)
        # Read the request before any simulated delay: like a real server, the write is received
        # (and then applied) even if the client gives up while we are "slow".
        receive = await _buffered(receive)
        if cfg.latency_s > 0:
            await asyncio.sleep(cfg.latency_s)
        fault = sb.faults.take(path)
        if fault is not None:
            status = await apply_fault(fault, send, sb.limiter.peek(cfg.location_id))
            if status != -1:
                sb._stats.record(route, status, faulted=True)
                return
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth != f"Bearer {cfg.token}" and not sb.oauth.accepts(auth):
            body = _nest(401, "Invalid token: access token is invalid", "Unauthorized")
            await _send_json(send, 401, body, sb.limiter.peek(cfg.location_id))
            sb._stats.record(route, 401)
            return
        allowed, rl_headers = sb.limiter.hit(cfg.location_id)
        if not allowed:
            await _send_json(send, 429, _nest(429, "Too Many Requests"), rl_headers)
            sb._stats.record(route, 429)
            return
        wanted = CALENDARS_VERSION if path.startswith("/calendars") else CONTACTS_VERSION
        version = headers.get(b"version", b"").decode("latin-1")
        if version != wanted:
            msg = "version header was not found" if not version else f"Version {version} is not supported"
            await _send_json(send, 400, _nest(400, msg, "Bad Request"), rl_headers)
            sb._stats.record(route, 400)
            return
        seen: dict[str, int] = {}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *rl_headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
        sb._stats.record(route, seen.get("status", 500))


class GHLSandbox:
    """One simulated GHL location (sub-account) with its seeded calendars and custom fields."""

    def __init__(
        self, config: GHLSandboxConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ):
        self.config = config or GHLSandboxConfig()
        self.faults = FaultInjector(seed=self.config.seed)
        self.limiter = RateLimiter(self.config, clock)
        self._stats = Stats()
        self.lock = threading.RLock()
        self.api = GHLApi(
            location_id=self.config.location_id,
            calendar_id=SANDBOX_CALENDAR_ID,
            user_id=SANDBOX_USER_ID,
            tz=ZoneInfo(SANDBOX_TIMEZONE),
            seed=self.config.seed,
            lock=self.lock,
        )
        self._api_routes: list[Route] = self.api.routes()
        self.oauth = GHLOAuth(location_id=self.config.location_id, clock=clock)
        self.app = Starlette(
            routes=[*self._control_routes(), *self.oauth.routes(), *self._api_routes],
            middleware=[Middleware(_Pipeline, sandbox=self)],
            exception_handlers={HTTPException: self._http_error},
        )

    # ------------------------------------------------------------------ public API
    @property
    def stats(self) -> dict[str, Any]:
        return self._stats.as_dict()

    def snapshot(self) -> dict[str, Any]:
        return {**self.api.snapshot(), "stats": self.stats}

    def reset(self) -> None:
        """Clear data, stats, limits and faults; seeded calendars and custom fields stay."""
        self.api.clear()
        self._stats.reset()
        self.limiter.reset()
        self.faults.clear()

    def set_limits(
        self,
        burst_max: int | None = None,
        burst_interval_ms: int | None = None,
        daily_limit: int | None = None,
    ) -> None:
        if burst_max is not None:
            self.config.burst_max = burst_max
        if burst_interval_ms is not None:
            self.config.burst_interval_ms = burst_interval_ms
        if daily_limit is not None:
            self.config.daily_limit = daily_limit

    def route_template(self, scope: Scope) -> str:
        method = scope.get("method", "GET")
        for route in self._api_routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                path = route.path if route.path != "/contacts" else "/contacts/"
                return f"{method} {path if path != '/calendars' else '/calendars/'}"
        return f"{method} (unmatched)"

    # ------------------------------------------------------------------ plumbing
    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status in (404, 405):
            body = {
                "statusCode": 404,
                "message": f"Cannot {request.method} {request.url.path}",
                "error": "Not Found",
            }
            return JSONResponse(body, status_code=404)
        return JSONResponse(
            {"statusCode": status, "message": str(getattr(exc, "detail", ""))}, status_code=status
        )

    def _control_routes(self) -> list[Route]:
        async def state(request: Request) -> Response:
            return JSONResponse(self.snapshot())

        async def stats(request: Request) -> Response:
            return JSONResponse(self.stats)

        async def faults(request: Request) -> Response:
            if request.method == "DELETE":
                self.faults.clear()
            elif request.method == "POST":
                try:
                    kwargs = await request.json()
                    self.faults.set(kwargs.pop("kind"), **kwargs)
                except (ValueError, TypeError, KeyError) as exc:
                    return JSONResponse({"error": f"bad fault: {exc}"}, status_code=400)
            return JSONResponse(self.faults.describe())

        async def reset(request: Request) -> Response:
            self.reset()
            return JSONResponse({"ok": True})

        async def limits(request: Request) -> Response:
            try:
                self.set_limits(**(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": f"bad limits: {exc}"}, status_code=400)
            c = self.config
            return JSONResponse(
                {
                    "burst_max": c.burst_max,
                    "burst_interval_ms": c.burst_interval_ms,
                    "daily_limit": c.daily_limit,
                }
            )

        return [
            Route("/_sandbox/state", state, methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/limits", limits, methods=["POST"]),
        ]


Handler = Callable[[Request, Any], tuple[int, Any]]
_EVENT_FIELDS = (
    "title",
    "meetingLocationType",
    "meetingLocationId",
    "appointmentStatus",
    "assignedUserId",
    "description",
    "address",
    "rrule",
)
_INACTIVE = ("cancelled", "invalid")
# AppointmentSchemaResponse: what create/update answer with (flat, no envelope).
_FLAT_FIELDS = (
    "id",
    "calendarId",
    "locationId",
    "contactId",
    "startTime",
    "endTime",
    "title",
    "meetingLocationType",
    "appointmentStatus",
    "assignedUserId",
    "address",
    "isRecurring",
    "rrule",
)


class GHLApi:
    """The location's data and the GHL endpoints over it (one ``Route`` per method and path)."""

    def __init__(
        self,
        *,
        location_id: str,
        calendar_id: str,
        user_id: str,
        tz: ZoneInfo,
        seed: int,
        lock: threading.RLock,
    ) -> None:
        self.location_id, self.user_id, self.tz, self.lock = location_id, user_id, tz, lock
        self.ids = st.IdFactory(seed)
        self.custom_fields = st.seed_custom_fields(location_id)
        self.calendars = {c["id"]: c for c in st.seed_calendars(location_id, calendar_id)}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        with self.lock:
            for table in (self.contacts, self.notes, self.tasks, self.events):
                table.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "contacts": [st.render_contact(c) for c in self.contacts.values()],
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

    # ------------------------------------------------------------------ helpers
    def _check_location(self, location_id: Any) -> None:
        if not location_id:
            raise st.unprocessable(["locationId should not be empty"])
        if location_id != self.location_id:
            raise ApiError(403, "The token does not have access to this location.", "Forbidden")

    def _get(
        self, table: dict[str, dict[str, Any]], key: str, what: str, contact_id: str | None = None
    ) -> dict[str, Any]:
        row = table.get(key)
        if row is None or (contact_id is not None and row.get("contactId") != contact_id):
            raise ApiError(404, f"{what} not found", "Not Found")
        return row

    def _contact(self, req: Request) -> dict[str, Any]:
        return self._get(self.contacts, req.path_params["contactId"], "Contact")

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    def _reject_duplicate(self, email: str | None, phone: str | None, exclude: str | None = None) -> None:
        pool = (c for c in self.contacts.values() if c["id"] != exclude)
        dup = st.find_duplicate(pool, email, phone)
        if dup:
            other, field = dup
            meta = {
                "contactName": st.render_contact(other).get("contactName"),
                "contactId": other["id"],
                "matchingField": field,
            }
            raise ApiError(400, "This location does not allow duplicated contacts.", meta=meta)

    def _write_contact(self, base: dict[str, Any], body: dict[str, Any], tags: list[str]) -> dict[str, Any]:
        """Apply on a copy so a 422 halfway through leaves the stored contact untouched."""
        new = json.loads(json.dumps(base))
        st.apply_contact_fields(new, body, self.custom_fields)
        new["tags"] = tags
        new["dateUpdated"] = st.iso_z(self._now())
        self.contacts[new["id"]] = new
        return st.render_contact(new)

    def _blank_contact(self) -> dict[str, Any]:
        now = st.iso_z(self._now())
        return {
            "id": self.ids.new(),
            "locationId": self.location_id,
            "dateAdded": now,
            "dateUpdated": now,
            "tags": [],
            "_custom": {},
        }

    # ------------------------------------------------------------------ contacts
    def create_contact(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "CreateContactDto")
        self._check_location(b["locationId"])
        self._reject_duplicate(b.get("email"), b.get("phone"))
        return 201, {
            "contact": self._write_contact(self._blank_contact(), b, st.merge_tags([], b.get("tags") or []))
        }

    def get_contact(self, req: Request, body: Any) -> tuple[int, Any]:
        return 200, {"contact": st.render_contact(self._contact(req))}

    def update_contact(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "UpdateContactDto")
        c = self._contact(req)
        self._reject_duplicate(b.get("email"), b.get("phone"), exclude=c["id"])
        tags = st.merge_tags([], b["tags"] or []) if "tags" in b else c["tags"]
        return 200, {"succeded": True, "contact": self._write_contact(c, b, tags)}

    def delete_contact(self, req: Request, body: Any) -> tuple[int, Any]:
        c = self._contact(req)
        del self.contacts[c["id"]]
        for table in (self.notes, self.tasks):
            for key in [k for k, v in table.items() if v["contactId"] == c["id"]]:
                del table[key]
        return 200, {"succeded": True}

    def upsert_contact(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "UpsertContactDto")
        self._check_location(b["locationId"])
        dup = st.find_duplicate(self.contacts.values(), b.get("email"), b.get("phone"))
        base = dup[0] if dup else self._blank_contact()
        contact = self._write_contact(base, b, st.merge_tags(base["tags"], b.get("tags") or []))
        return 200, {"new": dup is None, "contact": contact, "traceId": self.ids.trace_id()}

    def search(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "SearchBodyV2DTO")
        self._check_location(b["locationId"])
        return 200, st.search_contacts(list(self.contacts.values()), b)

    def duplicate(self, req: Request, body: Any) -> tuple[int, Any]:
        q = req.query_params
        self._check_location(q.get("locationId"))
        dup = st.find_duplicate(self.contacts.values(), q.get("email"), q.get("number"))
        return 200, {"contact": st.render_contact(dup[0]) if dup else None}

    def add_tags(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "TagsDTO")
        c = self._contact(req)
        c["tags"] = st.merge_tags(c["tags"], b["tags"])
        c["dateUpdated"] = st.iso_z(self._now())
        return 201, {"tags": list(c["tags"])}

    def remove_tags(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "TagsDTO")
        c = self._contact(req)
        gone = {t.strip().lower() for t in b["tags"]}
        c["tags"] = [t for t in c["tags"] if t not in gone]
        c["dateUpdated"] = st.iso_z(self._now())
        return 200, {"tags": list(c["tags"])}

    # ------------------------------------------------------------------ notes and tasks
    def list_notes(self, req: Request, body: Any) -> tuple[int, Any]:
        cid = self._contact(req)["id"]
        return 200, {"notes": [n for n in reversed(self.notes.values()) if n["contactId"] == cid]}

    def create_note(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "NotesDTO")
        cid = self._contact(req)["id"]
        note = {
            "id": self.ids.new(),
            "body": b["body"],
            "userId": b.get("userId") or self.user_id,
            "dateAdded": st.iso_z(self._now()),
            "contactId": cid,
            "pinned": False,
        }
        note.update({k: v for k, v in b.items() if k in ("title", "color", "pinned")})
        self.notes[note["id"]] = note
        return 201, {"note": note}

    def _note(self, req: Request) -> dict[str, Any]:
        return self._get(self.notes, req.path_params["id"], "Note", self._contact(req)["id"])

    def get_note(self, req: Request, body: Any) -> tuple[int, Any]:
        return 200, {"note": self._note(req)}

    def update_note(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "UpdateNoteDTO")
        note = self._note(req)
        note.update(b)
        return 200, {"note": note}

    def delete_note(self, req: Request, body: Any) -> tuple[int, Any]:
        del self.notes[self._note(req)["id"]]
        return 200, {"succeded": True}

    def list_tasks(self, req: Request, body: Any) -> tuple[int, Any]:
        cid = self._contact(req)["id"]
        return 200, {"tasks": [t for t in self.tasks.values() if t["contactId"] == cid]}

    def _task_fields(self, b: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in b.items() if v is not None}
        if "dueDate" in out:
            out["dueDate"] = st.iso_z(st.parse_time(out["dueDate"], self.tz, "dueDate"))
        return out

    def create_task(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "CreateTaskParams")
        cid = self._contact(req)["id"]
        task = {"id": self.ids.new(), "title": "", "body": "", "contactId": cid, **self._task_fields(b)}
        self.tasks[task["id"]] = task
        return 201, {"task": task}

    def _task(self, req: Request) -> dict[str, Any]:
        return self._get(self.tasks, req.path_params["taskId"], "Task", self._contact(req)["id"])

    def get_task(self, req: Request, body: Any) -> tuple[int, Any]:
        return 200, {"task": self._task(req)}

    def update_task(self, req: Request, body: Any) -> tuple[int, Any]:
        fields = self._task_fields(validate(body, "UpdateTaskBody"))
        task = self._task(req)
        task.update(fields)
        return 200, {"task": task}

    def complete_task(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "UpdateTaskStatusParams")
        task = self._task(req)
        task["completed"] = b["completed"]
        return 200, {"task": task}

    def delete_task(self, req: Request, body: Any) -> tuple[int, Any]:
        del self.tasks[self._task(req)["id"]]
        return 200, {"succeded": True}

    # ------------------------------------------------------------------ location
    def get_location(self, req: Request, body: Any) -> tuple[int, Any]:
        self._check_location(req.path_params["locationId"])
        location = {
            "id": self.location_id,
            "companyId": "SbxCompany0000000001",
            "name": "Sandbox Location",
            "address": "1 Loopback Way",
            "city": "Localhost",
            "state": "NY",
            "country": "US",
            "postalCode": "10001",
            "website": "https://sandbox.invalid",
            "timezone": self.tz.key,
            "email": "owner@sandbox.invalid",
            "phone": "+15555550100",
            "settings": {"allowDuplicateContact": False, "allowDuplicateOpportunity": False},
        }
        return 200, {"location": location}

    def list_custom_fields(self, req: Request, body: Any) -> tuple[int, Any]:
        self._check_location(req.path_params["locationId"])
        model = req.query_params.get("model", "all")
        if model not in ("contact", "opportunity", "all"):
            raise st.unprocessable(["model must be one of the following values: contact, opportunity, all"])
        return 200, {"customFields": [f for f in self.custom_fields if model in ("all", f["model"])]}

    def get_custom_field(self, req: Request, body: Any) -> tuple[int, Any]:
        self._check_location(req.path_params["locationId"])
        key = req.path_params["id"]
        for f in self.custom_fields:
            if key in (f["id"], f["fieldKey"]):
                return 200, {"customField": f}
        raise ApiError(404, "Custom field not found", "Not Found")

    # ------------------------------------------------------------------ calendars
    def list_calendars(self, req: Request, body: Any) -> tuple[int, Any]:
        self._check_location(req.query_params.get("locationId"))
        group = req.query_params.get("groupId")
        return 200, {"calendars": [c for c in self.calendars.values() if group in (None, c["groupId"])]}

    def _ms(self, req: Request, name: str) -> datetime:
        raw = req.query_params.get(name)
        try:
            return datetime.fromtimestamp(int(raw or "") / 1000, UTC)
        except ValueError:
            raise st.unprocessable([f"{name} must be a number (epoch milliseconds)"]) from None

    def free_slots(self, req: Request, body: Any) -> tuple[int, Any]:
        cal = self._get(self.calendars, req.path_params["calendarId"], "Calendar")
        start, end = self._ms(req, "startDate"), self._ms(req, "endDate")
        if end < start:
            raise st.unprocessable(["endDate must be after startDate"])
        if end - start > timedelta(days=31):
            raise st.unprocessable(["Date range can not be more than 31 days"])
        try:
            out_tz = ZoneInfo(req.query_params.get("timezone") or self.tz.key)
        except (ValueError, KeyError):
            raise st.unprocessable(["timezone must be a valid IANA timezone"]) from None
        slots = st.free_slots(cal, self._busy(cal["id"]), start, end, self.tz, out_tz)
        return 200, {**{day: {"slots": s} for day, s in slots.items()}, "traceId": self.ids.trace_id()}

    def _busy(self, calendar_id: str, exclude: str | None = None) -> list[tuple[datetime, datetime]]:
        return [
            (e["_start"], e["_end"])
            for e in self.events.values()
            if e["calendarId"] == calendar_id
            and e["id"] != exclude
            and e["appointmentStatus"] not in _INACTIVE
        ]

    def _check_slot(self, cal: dict[str, Any], start: datetime, end: datetime, exclude: str | None) -> None:
        offered = st.free_slots(cal, [], start, start, self.tz, self.tz)
        on_grid = any(datetime.fromisoformat(s) == start for day in offered.values() for s in day)
        clash = any(start < b_end and b_start < end for b_start, b_end in self._busy(cal["id"], exclude))
        if clash or not on_grid:
            raise ApiError(400, "The slot you have selected is no longer available", "Bad Request")

    def _calendar_ref(self, calendar_id: str) -> dict[str, Any]:
        cal = self.calendars.get(calendar_id)
        if cal is None:
            raise ApiError(400, "Calendar not found", "Bad Request")
        return cal

    def _event_dto(self, e: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in e.items() if not k.startswith("_")}
        out.update(
            startTime=st.iso_offset(e["_start"], self.tz),
            endTime=st.iso_offset(e["_end"], self.tz),
            dateAdded=st.iso_offset(e["_added"], self.tz),
            dateUpdated=st.iso_offset(e["_updated"], self.tz),
        )
        return out

    def _flat(self, e: dict[str, Any]) -> dict[str, Any]:
        dto = self._event_dto(e)
        return {k: dto.get(k) for k in _FLAT_FIELDS}

    def create_appointment(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "AppointmentCreateSchema")
        self._check_location(b["locationId"])
        cal = self._calendar_ref(b["calendarId"])
        contact = self.contacts.get(b["contactId"])
        if contact is None:
            raise ApiError(400, "Contact not found", "Bad Request")
        start = st.parse_time(b["startTime"], self.tz, "startTime")
        end = st.parse_time(b["endTime"], self.tz, "endTime") if b.get("endTime") else None
        end = end or start + timedelta(minutes=cal["slotDuration"])
        if end <= start:
            raise st.unprocessable(["endTime must be after startTime"])
        if not b.get("ignoreFreeSlotValidation"):
            self._check_slot(cal, start, end, None)
        now = self._now()
        user = b.get("assignedUserId") or self.user_id
        event: dict[str, Any] = {
            "id": self.ids.new(),
            "calendarId": cal["id"],
            "locationId": self.location_id,
            "contactId": contact["id"],
            "groupId": cal["groupId"],
            "title": b.get("title") or st.render_contact(contact).get("contactName") or "Appointment",
            "meetingLocationType": b.get("meetingLocationType") or "custom",
            "address": b.get("address") or "",
            "appointmentStatus": b.get("appointmentStatus") or "confirmed",
            "assignedUserId": user,
            "users": [user],
            "notes": "",
            "description": b.get("description") or "",
            "isRecurring": bool(b.get("rrule") and b.get("ignoreFreeSlotValidation")),
            "rrule": b.get("rrule"),
            "assignedResources": [],
            "createdBy": {"userId": None, "source": "third_party"},
            "masterEventId": None,
            "_start": start,
            "_end": end,
            "_added": now,
            "_updated": now,
        }
        self.events[event["id"]] = event
        return 200, self._flat(event)

    def update_appointment(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "AppointmentEditSchema")
        e = self._get(self.events, req.path_params["eventId"], "Appointment")
        cal = self._calendar_ref(b.get("calendarId") or e["calendarId"])
        start, end = e["_start"], e["_end"]
        if b.get("startTime"):
            start = st.parse_time(b["startTime"], self.tz, "startTime")
            end = start + (e["_end"] - e["_start"])
        if b.get("endTime"):
            end = st.parse_time(b["endTime"], self.tz, "endTime")
        if end <= start:
            raise st.unprocessable(["endTime must be after startTime"])
        moved = (start, end, cal["id"]) != (e["_start"], e["_end"], e["calendarId"])
        status = b.get("appointmentStatus") or e["appointmentStatus"]
        if moved and status not in _INACTIVE and not b.get("ignoreFreeSlotValidation"):
            self._check_slot(cal, start, end, e["id"])
        e.update({k: b[k] for k in _EVENT_FIELDS if b.get(k) is not None})
        e.update(calendarId=cal["id"], groupId=cal["groupId"], _start=start, _end=end, _updated=self._now())
        e["users"] = [e["assignedUserId"]]
        return 200, self._flat(e)

    def get_event(self, req: Request, body: Any) -> tuple[int, Any]:
        return 200, {
            "event": self._event_dto(self._get(self.events, req.path_params["eventId"], "Appointment"))
        }

    def list_events(self, req: Request, body: Any) -> tuple[int, Any]:
        q = req.query_params
        self._check_location(q.get("locationId"))
        start, end = self._ms(req, "startTime"), self._ms(req, "endTime")
        if not any(q.get(k) for k in ("calendarId", "userId", "groupId")):
            raise st.unprocessable(["One of calendarId, userId or groupId is required"])
        rows = [
            e
            for e in self.events.values()
            if e["_start"] < end
            and e["_end"] > start
            and q.get("calendarId") in (None, e["calendarId"])
            and q.get("userId") in (None, e["assignedUserId"])
            and q.get("groupId") in (None, e["groupId"])
        ]
        return 200, {"events": [self._event_dto(e) for e in sorted(rows, key=lambda e: e["_start"])]}

    def delete_event(self, req: Request, body: Any) -> tuple[int, Any]:
        validate(body, "DeleteAppointmentSchema")
        del self.events[self._get(self.events, req.path_params["eventId"], "Appointment")["id"]]
        return 201, {"succeeded": True}

    def contact_appointments(self, req: Request, body: Any) -> tuple[int, Any]:
        cid = self._contact(req)["id"]
        rows = sorted((e for e in self.events.values() if e["contactId"] == cid), key=lambda e: e["_start"])
        return 200, {"events": [self._event_dto(e) for e in rows]}

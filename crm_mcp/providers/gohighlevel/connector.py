"""GoHighLevel (LeadConnector API v2) connector: neutral models <-> GHL wire shapes, nothing else.

Quirks handled here, all from the official OpenAPI files (shared/specs/gohighlevel):
- `Version` header per service: 2021-07-28 for contacts/locations, 2021-04-15 for calendars.
- Only properties the spec defines are sent (GHL's validation layer answers 422 to any other).
- customFields are written as `[{id|key, field_value}]` but read back as `[{id, value}]`.
- Appointment create/update answer a *flat* 200 object; get answers `{event: ...}`; free slots
  answer a map keyed by date next to non-date keys such as `traceId`.
- Appointment times go out with an explicit UTC offset; calendar ranges are epoch milliseconds.
The pure wire <-> neutral mappers are in `wire`; this module holds the provider spec,
auth and the connector that calls the API.
Retry policy lives in ResilientClient: POSTs are marked idempotent only where GHL dedupes
(upsert by email/phone) or the call is a read (search) or a set operation (tags).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from crm_mcp.connectors.auth import StaticTokenAuth
from crm_mcp.connectors.base import (
    Appointment,
    Calendar,
    Contact,
    ContactPage,
    FieldSchema,
    Note,
    Task,
)
from crm_mcp.connectors.fields import FieldResolver
from crm_mcp.connectors.http import ResilientClient, check_base_url
from crm_mcp.connectors.oauth import OAuth2RefreshAuth, TokenStore
from crm_mcp.errors import ConfigurationError, InvalidRequestError, UpstreamUnavailableError

from .spec import CALENDARS_VERSION, GHL_SPEC, STATUS_TO_WIRE
from .wire import (
    APPOINTMENT_FIELDS,
    STANDARD_CONTACT_FIELDS,
    appointment_changes_to_wire,
    appointment_from_wire,
    calendar_from_wire,
    contact_from_wire,
    contact_to_wire,
    custom_fields_to_wire,
    epoch_ms,
    field_from_wire,
    free_slots_from_wire,
    notes_from_wire,
    task_from_wire,
    wire_time,
)

_CAL = {"Version": CALENDARS_VERSION}
T = TypeVar("T")

MAX_SLOT_RANGE = timedelta(days=31)
# OAuth (crm-apis.md §1.2): form-encoded, no Version header, refresh token rotates on every use.
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
RECONNECT_HINT = (
    "Reinstall or reconnect the GoHighLevel Marketplace app for this location, then set the new "
    "refresh token (CRM_MCP_GHL_REFRESH_TOKEN or refresh_token in crm-mcp.toml) and retry."
)


def _mapped(fn: Callable[..., T], *args: Any) -> T:
    """Run a wire->neutral mapper; a provider contract surprise becomes a typed, retryable error."""
    try:
        return fn(*args)
    except (ValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise UpstreamUnavailableError(
            f"gohighlevel: unexpected response shape ({exc.__class__.__name__})", provider="gohighlevel"
        ) from None


def _get(body: Any, key: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise UpstreamUnavailableError(f"gohighlevel: response has no {key!r}", provider="gohighlevel")
    return body[key]


def _field_refused(exc: Exception) -> bool:
    """GoHighLevel's validation refusing a custom field (`customFields.0 custom field ... not
    found`, `... is not an option of ...`): our field list may be out of date."""
    return isinstance(exc, InvalidRequestError) and "customfields" in exc.message.lower()


class GoHighLevelConnector:
    """One GHL sub-account (location) reached with one token.

    Capabilities: contacts, tags, notes, tasks, appointments, calendars, custom fields (no batch).
    """

    provider = "gohighlevel"

    def __init__(
        self,
        connection: str,
        *,
        token: str | None = None,
        location_id: str,
        base_url: str = GHL_SPEC.default_base_url,
        client: ResilientClient | None = None,
        respect_free_slots: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        token_store: TokenStore | None = None,
        token_clock: Callable[[], float] = time.time,
        **client_kwargs: Any,
    ) -> None:
        """`respect_free_slots=False` (default) mirrors bookings the local system of record already
        accepted even where GoHighLevel's own availability would refuse them (outside open hours,
        slot taken): losing a confirmed booking is worse than a double entry a human can see.

        Auth: a Private Integration `token`, or OAuth (`client_id`, `client_secret` and a
        `refresh_token` and/or a `token_store` holding the rotated one) — OAuth wins when both.
        """
        if not location_id:
            raise ConfigurationError(
                f"gohighlevel connection {connection!r}: location_id is required "
                "(CRM_MCP_GHL_LOCATION_ID, or location_id in its crm-mcp.toml table)"
            )
        self.connection = connection
        self.location_id = location_id
        self.respect_free_slots = respect_free_slots
        if client is None:
            url = check_base_url(base_url)
            auth: StaticTokenAuth | OAuth2RefreshAuth
            if client_id or client_secret:
                auth = OAuth2RefreshAuth(
                    provider=self.provider,
                    connection=connection,
                    token_url=f"{url}{TOKEN_PATH}",
                    client_id=client_id or "",
                    client_secret=client_secret or "",
                    refresh_token=refresh_token,
                    store=token_store,
                    clock=token_clock,
                    extra_params={"user_type": "Location"},
                    reconnect_hint=RECONNECT_HINT,
                )
            else:
                auth = StaticTokenAuth(token or "")
            client = ResilientClient(GHL_SPEC, connection, base_url=url, auth=auth, **client_kwargs)
        self._client = client
        clock = client_kwargs.get("clock", time.monotonic)  # the client's clock: tests drive both
        self._fields = FieldResolver(GHL_SPEC.logical_fields, self.list_custom_fields, clock=clock)

    @property
    def client(self) -> ResilientClient:
        return self._client

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        return await self._client.request_json(method, path, **kw)

    async def ping(self) -> None:
        await self._call("GET", f"/locations/{self.location_id}")

    # -- contacts ---------------------------------------------------------------------------
    async def upsert_contact(self, contact: Contact) -> tuple[Contact, bool]:
        """Upsert by email/phone; custom fields (logical names or keys) and tags ride along: one
        request, the field list being read once per connection (see `FieldResolver`)."""

        async def send(resolved: dict[str, Any]) -> tuple[Contact, bool]:
            wire = (
                contact.model_copy(update={"custom_fields": resolved}) if contact.custom_fields else contact
            )
            body = {"locationId": self.location_id, **contact_to_wire(wire)}
            data = await self._call("POST", "/contacts/upsert", json=body, idempotent=True)
            return _mapped(contact_from_wire, _get(data, "contact")), bool(data.get("new"))

        if not contact.custom_fields:
            return await send({})
        return await self._fields.write(contact.custom_fields, send, field_error=_field_refused)

    async def get_contact(self, contact_id: str) -> Contact:
        data = await self._call("GET", f"/contacts/{contact_id}")
        return _mapped(contact_from_wire, _get(data, "contact"))

    async def search_contacts(self, query: str | None, limit: int, cursor: str | None) -> ContactPage:
        if not 1 <= limit <= 500:
            raise InvalidRequestError("gohighlevel search: limit must be 1..500", provider=self.provider)
        try:
            page = int(cursor) if cursor else 1
        except ValueError:
            msg = f"gohighlevel search: bad cursor {cursor!r}"
            raise InvalidRequestError(msg, provider=self.provider) from None
        body: dict[str, Any] = {"locationId": self.location_id, "page": page, "pageLimit": limit}
        if query:
            body["query"] = query[:75]
        data = await self._call("POST", "/contacts/search", json=body, idempotent=True)
        rows = _get(data, "contacts") or []
        contacts = [_mapped(contact_from_wire, r) for r in rows]
        total = data.get("total")
        more = page * limit < total if isinstance(total, int) else len(rows) == limit
        return ContactPage(contacts=contacts, total=total, next_cursor=str(page + 1) if more else None)

    async def set_contact_fields(self, contact_id: str, values: Mapping[str, Any]) -> None:
        async def send(resolved: dict[str, Any]) -> None:
            if resolved:
                body = {"customFields": custom_fields_to_wire(resolved)}
                data = await self._call("PUT", f"/contacts/{contact_id}", json=body)
                _get(data, "contact")

        await self._fields.write(values, send, field_error=_field_refused)

    async def add_tags(self, contact_id: str, tags: list[str]) -> list[str]:
        data = await self._call("POST", f"/contacts/{contact_id}/tags", json={"tags": tags}, idempotent=True)
        return list(_get(data, "tags") or [])

    async def remove_tags(self, contact_id: str, tags: list[str]) -> list[str]:
        path = f"/contacts/{contact_id}/tags"
        data = await self._call("DELETE", path, json={"tags": tags}, idempotent=True)
        return list(_get(data, "tags") or [])

    async def add_note(self, note: Note) -> Note:
        data = await self._call("POST", f"/contacts/{note.contact_id}/notes", json={"body": note.body})
        return _mapped(notes_from_wire, [_get(data, "note")])[0]

    async def list_notes(self, contact_id: str) -> list[Note]:
        data = await self._call("GET", f"/contacts/{contact_id}/notes")
        return _mapped(notes_from_wire, _get(data, "notes"))

    async def create_task(self, task: Task) -> Task:
        due = task.due_date if task.due_date.tzinfo else task.due_date.replace(tzinfo=UTC)
        body: dict[str, Any] = {
            "title": task.title,
            "dueDate": due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "completed": task.completed,
        }
        if task.body:
            body["body"] = task.body
        data = await self._call("POST", f"/contacts/{task.contact_id}/tasks", json=body)
        return _mapped(task_from_wire, _get(data, "task"), task.contact_id)

    async def list_tasks(self, contact_id: str) -> list[Task]:
        data = await self._call("GET", f"/contacts/{contact_id}/tasks")
        return [_mapped(task_from_wire, t, contact_id) for t in _get(data, "tasks") or []]

    async def list_custom_fields(self) -> list[FieldSchema]:
        path = f"/locations/{self.location_id}/customFields"
        data = await self._call("GET", path, params={"model": "contact"})
        return [_mapped(field_from_wire, f) for f in _get(data, "customFields") or []]

    def contact_fields(self) -> list[FieldSchema]:
        """GHL's standard contact properties (not returned by the custom-fields endpoint)."""
        return [
            FieldSchema(key=k, label=label, type=t, custom=False) for k, label, t in STANDARD_CONTACT_FIELDS
        ]

    def appointment_fields(self) -> list[FieldSchema]:
        """Calendar event properties; the status options are GoHighLevel's own words."""
        statuses = [*STATUS_TO_WIRE.values(), "invalid"]
        return [
            FieldSchema(key=k, label=label, type=t, required=req, custom=False,
                        options=statuses if k == "appointmentStatus" else [])
            for k, label, t, req in APPOINTMENT_FIELDS
        ]  # fmt: skip

    # -- calendars --------------------------------------------------------------------------
    async def list_calendars(self) -> list[Calendar]:
        params = {"locationId": self.location_id}
        data = await self._call("GET", "/calendars/", params=params, headers=_CAL)
        return [_mapped(calendar_from_wire, c) for c in _get(data, "calendars") or []]

    async def free_slots(
        self, calendar_id: str, start: datetime, end: datetime, timezone: str | None
    ) -> dict[str, list[datetime]]:
        start_ms, end_ms = epoch_ms(start), epoch_ms(end)
        if end_ms <= start_ms or end_ms - start_ms > MAX_SLOT_RANGE.total_seconds() * 1000:
            raise InvalidRequestError(
                "gohighlevel free slots: end must be after start and the range at most 31 days",
                provider=self.provider,
            )
        params: dict[str, Any] = {"startDate": start_ms, "endDate": end_ms}
        if timezone:
            params["timezone"] = timezone
        data = await self._call("GET", f"/calendars/{calendar_id}/free-slots", params=params, headers=_CAL)
        return _mapped(free_slots_from_wire, data)

    async def create_appointment(self, appointment: Appointment) -> Appointment:
        a = appointment
        if not a.calendar_id:
            raise InvalidRequestError(
                "gohighlevel appointments need a calendar_id (the connection's calendar_id option)",
                provider=self.provider,
            )
        body: dict[str, Any] = {
            "calendarId": a.calendar_id,
            "locationId": self.location_id,
            "contactId": a.contact_id,
            "startTime": wire_time(a.start_time),
            "appointmentStatus": STATUS_TO_WIRE[a.status],
        }
        if not self.respect_free_slots:
            body["ignoreFreeSlotValidation"] = True
        optional = {"endTime": a.end_time and wire_time(a.end_time), "title": a.title,
                    "address": a.address, "description": a.notes}  # fmt: skip
        body.update({k: v for k, v in optional.items() if v})
        data = await self._call("POST", "/calendars/events/appointments", json=body, headers=_CAL)
        return _mapped(appointment_from_wire, data, appointment)

    async def update_appointment(self, appointment_id: str, changes: dict[str, Any]) -> Appointment:
        body = appointment_changes_to_wire(changes)
        if not self.respect_free_slots and "startTime" in body:
            body["ignoreFreeSlotValidation"] = True
        path = f"/calendars/events/appointments/{appointment_id}"
        data = await self._call("PUT", path, json=body, headers=_CAL)
        return _mapped(appointment_from_wire, data)

    async def get_appointment(self, appointment_id: str) -> Appointment:
        path = f"/calendars/events/appointments/{appointment_id}"
        data = await self._call("GET", path, headers=_CAL)
        return _mapped(appointment_from_wire, _get(data, "event"))

    async def list_contact_appointments(self, contact_id: str) -> list[Appointment]:
        data = await self._call("GET", f"/contacts/{contact_id}/appointments")
        return [_mapped(appointment_from_wire, e) for e in _get(data, "events") or []]

    def snapshot(self) -> dict[str, Any]:
        return self._client.snapshot()

    async def aclose(self) -> None:
        await self._client.aclose()

"""HubSpot CRM v3 connector: neutral models <-> HubSpot objects, nothing else.

Quirks handled here, from the official OpenAPI files (HubSpot/HubSpot-public-api-spec-collection)
and crm-apis.md §3:
- Auth: a private-app token, or OAuth 2 (`/oauth/v1/token`, 30-minute access tokens refreshed
  single-flight; HubSpot's refresh tokens do not rotate, but whatever comes back is persisted).
- Contacts are keyed by email: a create whose email exists answers **409 "Contact already exists.
  Existing ID: N"**, and the upsert PATCHes that id — never a second contact. Without an email,
  a phone search decides between PATCH and create.
- Every property value travels as a string; `date` properties take a day (midnight UTC).
- Notes, tasks and meetings are objects tied to the contact by an association (see `objects`).
- Search has its own 4 requests/s budget (`spec.endpoint_limits`, kept by the client) and stops
  at 10,000 results; batches take at most 100 inputs and answer 207 on partial failure.
- HubSpot has no tags: this connector has no Tags capability.
Retry policy lives in ResilientClient: reads, searches, batch reads, PATCHes of absolute values,
email-keyed creates and batch upserts are marked idempotent; creates without a natural key are not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from crm_mcp.connectors.auth import StaticTokenAuth
from crm_mcp.connectors.base import (
    Appointment,
    BatchItem,
    CallActivity,
    Contact,
    ContactPage,
    FieldSchema,
    Note,
    Task,
)
from crm_mcp.connectors.http import ResilientClient, check_base_url
from crm_mcp.connectors.oauth import OAuth2RefreshAuth, TokenStore
from crm_mcp.connectors.phones import phone_variants, to_e164
from crm_mcp.errors import ConfigurationError, InvalidRequestError, NotFoundError, UpstreamUnavailableError

from . import wire
from .objects import ObjectCalls, mapped, results
from .properties import ContactProperties
from .spec import (
    ACCOUNT_PATH,
    BATCH_MAX,
    CALL_TO_CONTACT,
    HUBSPOT_SPEC,
    MEETING_TO_CONTACT,
    NOTE_TO_CONTACT,
    OBJECTS,
    SEARCH_CEILING,
    SEARCH_MAX_LIMIT,
    TASK_TO_CONTACT,
    TOKEN_PATH,
)

CONTACTS = f"{OBJECTS}/contacts"
RECONNECT_HINT = (
    "Reinstall or reconnect the HubSpot app for this portal, then set the new refresh token "
    "(CRM_MCP_HUBSPOT_REFRESH_TOKEN or refresh_token in crm-mcp.toml) and retry."
)


class HubSpotConnector:
    """One HubSpot portal reached with a private-app token or an OAuth app install.

    Capabilities: contacts, notes, tasks, appointments (meetings), custom fields, batch, phone
    lookup, call activities (the calls object).
    """

    provider = "hubspot"
    max_batch = BATCH_MAX

    def __init__(
        self,
        connection: str,
        *,
        token: str | None = None,
        base_url: str = HUBSPOT_SPEC.default_base_url,
        portal_id: str | int | None = None,
        client: ResilientClient | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        token_store: TokenStore | None = None,
        token_clock: Callable[[], float] = time.time,
        **client_kwargs: Any,
    ) -> None:
        """Auth: OAuth when `client_id`, `client_secret` and a `refresh_token` and/or a
        `token_store` are given; else the private-app `token`.

        Raises:
            ConfigurationError: no usable credentials, or a base URL that is not https/loopback.
        """
        self.connection = connection
        self.portal_id = str(portal_id) if portal_id not in (None, "") else None
        if client is None:
            url = check_base_url(base_url)
            auth: StaticTokenAuth | OAuth2RefreshAuth
            if client_id and client_secret and (refresh_token or token_store is not None):
                auth = OAuth2RefreshAuth(
                    provider=self.provider,
                    connection=connection,
                    token_url=f"{url}{TOKEN_PATH}",
                    client_id=client_id,
                    client_secret=client_secret,
                    refresh_token=refresh_token,
                    store=token_store,
                    clock=token_clock,
                    reconnect_hint=RECONNECT_HINT,
                )
            else:
                auth = StaticTokenAuth(token or "")
            client = ResilientClient(HUBSPOT_SPEC, connection, base_url=url, auth=auth, **client_kwargs)
        self._client = client
        self._objects = ObjectCalls(self._call)
        self._properties = ContactProperties(self._call)

    @property
    def client(self) -> ResilientClient:
        return self._client

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        return await self._client.request_json(method, path, **kw)

    async def ping(self) -> None:
        """Raises: ConfigurationError when the credentials belong to another portal than `portal_id`."""
        data = await self._call("GET", ACCOUNT_PATH)
        portal = data.get("portalId") if isinstance(data, dict) else None
        if self.portal_id and portal is not None and str(portal) != self.portal_id:
            raise ConfigurationError(
                f"hubspot connection {self.connection!r}: the credentials belong to portal {portal}, "
                f"not the configured portal_id {self.portal_id} (CRM_MCP_HUBSPOT_PORTAL_ID, or portal_id in "
                "its crm-mcp.toml table)"
            )

    # -- contacts ---------------------------------------------------------------------------
    async def _write_properties(self, contact: Contact) -> dict[str, str]:
        props = wire.contact_properties(contact)
        if contact.custom_fields:
            props.update(await self._properties.resolve(contact.custom_fields))
        return props

    async def upsert_contact(self, contact: Contact) -> tuple[Contact, bool]:
        """By email (create; on 409 PATCH the existing id), else by phone (search, then PATCH or create).

        Raises:
            InvalidRequestError: the contact has neither email nor phone, or HubSpot refused a value.
        """
        props = await self._write_properties(contact)
        if contact.email:
            return await self._create_or_patch(props)
        if not contact.phone:
            raise InvalidRequestError("hubspot upsert needs an email or a phone", provider=self.provider)
        phone = {"propertyName": "phone", "operator": "EQ", "value": contact.phone}
        found = results(await self._search(phone, 1))
        if found:
            return await self._patch_contact(str(found[0]["id"]), props), False
        data = await self._call("POST", CONTACTS, json={"properties": props, "associations": []})
        return mapped(wire.contact_from_wire, data), True

    async def _create_or_patch(self, props: Mapping[str, str]) -> tuple[Contact, bool]:
        """Create; HubSpot refuses a second contact with the email (409 naming the existing id),
        which is then updated instead. Safe to re-send: the email is the natural key."""
        body = {"properties": dict(props), "associations": []}
        try:
            data = await self._call("POST", CONTACTS, json=body, idempotent=True)
        except InvalidRequestError as exc:
            existing = wire.existing_contact_id(exc.message) if exc.status == 409 else None
            if existing is None:
                raise
            return await self._patch_contact(existing, props), False
        return mapped(wire.contact_from_wire, data), True

    async def _patch_contact(self, contact_id: str, props: Mapping[str, str]) -> Contact:
        path = f"{CONTACTS}/{contact_id}"
        data = await self._call("PATCH", path, json={"properties": dict(props)}, idempotent=True)
        return mapped(wire.contact_from_wire, data)

    async def get_contact(self, contact_id: str) -> Contact:
        params = {"properties": ",".join(self._properties.read_names())}
        data = await self._call("GET", f"{CONTACTS}/{contact_id}", params=params)
        return mapped(wire.contact_from_wire, data)

    async def _search(
        self, flt: Mapping[str, Any] | None, limit: int, after: str = "0", query: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "filterGroups": [{"filters": [dict(flt)]}] if flt else [],
            "properties": self._properties.read_names(),
            "sorts": ["hs_object_id"],  # a stable order, so `after` offsets do not skip or repeat
            "limit": limit,
            "after": after,
        }
        if query:
            body["query"] = query[:3000]
        data = await self._call("POST", f"{CONTACTS}/search", json=body, idempotent=True)
        if not isinstance(data, dict):
            raise UpstreamUnavailableError("hubspot: search answer is not an object", provider=self.provider)
        return data

    async def search_contacts(self, query: str | None, limit: int, cursor: str | None) -> ContactPage:
        """One page of contacts matching `query` (all contacts without one), `limit` at most 200.

        HubSpot serves at most 10,000 results per query: the last page before that has no cursor.

        Raises:
            InvalidRequestError: limit below 1, or a cursor that is not one this method returned.
        """
        offset = cursor or "0"
        if limit < 1 or not offset.isdigit() or int(offset) >= SEARCH_CEILING:
            msg = f"hubspot search: limit must be >= 1 and the cursor one a page returned (got {cursor!r})"
            raise InvalidRequestError(msg, provider=self.provider)
        size = min(limit, SEARCH_MAX_LIMIT, SEARCH_CEILING - int(offset))
        data = await self._search(None, size, offset, (query or "").strip())
        contacts = [mapped(wire.contact_from_wire, r) for r in results(data)]
        after = ((data.get("paging") or {}).get("next") or {}).get("after")
        more = after is not None and (not str(after).isdigit() or int(after) < SEARCH_CEILING)
        total = data.get("total")
        return ContactPage(
            contacts=contacts,
            total=total if isinstance(total, int) else None,
            next_cursor=str(after) if more else None,
        )

    async def set_contact_fields(self, contact_id: str, values: Mapping[str, Any]) -> None:
        resolved = await self._properties.resolve(values)
        if resolved:
            await self._patch_contact(contact_id, resolved)

    # -- custom fields ----------------------------------------------------------------------
    async def list_custom_fields(self) -> list[FieldSchema]:
        """The portal's own contact properties (not HubSpot-defined), options as option values."""
        await self._properties.load()
        return list(self._properties.custom)

    def contact_fields(self) -> list[FieldSchema]:
        """The standard contact properties: the portal's own list once `list_custom_fields` (or a
        custom-field write) loaded it, else the core ones HubSpot always has."""
        return self._properties.standard_fields()

    def appointment_fields(self) -> list[FieldSchema]:
        """Meeting properties (HubSpot has no calendars); the outcome options are HubSpot's words."""
        return [
            FieldSchema(key=k, label=label, type=t, required=req,
                        options=list(wire.MEETING_OUTCOMES) if k == "hs_meeting_outcome" else [])
            for k, label, t, req in wire.MEETING_FIELDS
        ]  # fmt: skip

    # -- notes, tasks, appointments (meetings) ----------------------------------------------
    async def add_note(self, note: Note) -> Note:
        props = wire.note_properties(note, datetime.now(UTC))
        data = await self._objects.create("notes", props, note.contact_id, NOTE_TO_CONTACT)
        return mapped(wire.note_from_wire, data, note.contact_id)

    async def list_notes(self, contact_id: str) -> list[Note]:
        rows = await self._objects.for_contact(contact_id, "notes", wire.NOTE_PROPERTIES)
        return [mapped(wire.note_from_wire, r, contact_id) for r in rows]

    # -- calls (the calls object) and lookup by phone -------------------------------------------
    async def find_contacts_by_phone(self, e164: str) -> list[Contact]:
        """Contacts whose `phone` or `mobilephone` holds this number in any common form: HubSpot's
        filters compare the stored text, so the forms go in one IN filter per property."""
        forms = phone_variants(e164)
        groups = [
            {"filters": [{"propertyName": name, "operator": "IN", "values": forms}]}
            for name in ("phone", "mobilephone")
        ]
        body = {"filterGroups": groups, "properties": self._properties.read_names(), "limit": 100}
        data = await self._call("POST", f"{CONTACTS}/search", json=body, idempotent=True)
        found = [mapped(wire.contact_from_wire, r) for r in results(data)]
        return [c for c in found if to_e164(c.phone) == e164]

    async def log_call(self, call: CallActivity) -> CallActivity:
        data = await self._objects.create(
            "calls", wire.call_properties(call), call.contact_id, CALL_TO_CONTACT
        )
        return mapped(wire.call_from_wire, data, call.contact_id)

    async def find_call(self, contact_id: str, external_id: str) -> CallActivity | None:
        rows = await self._objects.for_contact(contact_id, "calls", wire.CALL_PROPERTIES)
        calls = [mapped(wire.call_from_wire, r, contact_id) for r in rows]
        return next((c for c in calls if c.external_id == external_id), None)

    async def update_call(self, call_id: str, changes: Mapping[str, Any]) -> CallActivity:
        current = await self._objects.read("calls", call_id, wire.CALL_PROPERTIES)
        contact_id = wire.associated_contact(current) or ""
        marker = mapped(wire.call_from_wire, current, contact_id).external_id
        props = wire.call_changes_to_wire(changes, wire.call_marker(marker) if marker else None)
        data = await self._objects.update("calls", call_id, props)
        return mapped(wire.call_from_wire, data, contact_id)

    async def create_task(self, task: Task) -> Task:
        data = await self._objects.create(
            "tasks", wire.task_properties(task), task.contact_id, TASK_TO_CONTACT
        )
        return mapped(wire.task_from_wire, data, task.contact_id)

    async def list_tasks(self, contact_id: str) -> list[Task]:
        rows = await self._objects.for_contact(contact_id, "tasks", wire.TASK_PROPERTIES)
        return [mapped(wire.task_from_wire, r, contact_id) for r in rows]

    async def create_appointment(self, appointment: Appointment) -> Appointment:
        a = appointment
        data = await self._objects.create(
            "meetings", wire.meeting_properties(a), a.contact_id, MEETING_TO_CONTACT
        )
        return mapped(wire.appointment_from_wire, data, a.contact_id, a.status)

    async def update_appointment(self, appointment_id: str, changes: dict[str, Any]) -> Appointment:
        """Neutral changes (status, start_time, end_time, title, notes, address) -> a meeting PATCH.

        Raises:
            InvalidRequestError: an unknown field or status; NotFoundError: no such meeting.
        """
        try:
            props = wire.meeting_changes_to_wire(changes)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"hubspot appointment update: {exc}", provider=self.provider) from None
        if props:
            await self._objects.update("meetings", appointment_id, props)
        return await self._appointment(appointment_id, changes.get("status"))

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return await self._appointment(appointment_id, None)

    async def _appointment(self, appointment_id: str, wanted_status: str | None) -> Appointment:
        data = await self._objects.read("meetings", appointment_id, wire.MEETING_PROPERTIES)
        contact_id = wire.associated_contact(data) or ""
        return mapped(wire.appointment_from_wire, data, contact_id, wanted_status)

    async def list_contact_appointments(self, contact_id: str) -> list[Appointment]:
        rows = await self._objects.for_contact(contact_id, "meetings", wire.MEETING_PROPERTIES)
        found = [mapped(wire.appointment_from_wire, r, contact_id) for r in rows]
        return sorted(found, key=lambda a: a.start_time)

    # -- batch ------------------------------------------------------------------------------
    async def upsert_contacts(self, contacts: list[Contact]) -> list[BatchItem]:
        """Upsert by email, 100 per call (`batch/upsert`, idProperty email); one BatchItem per input.

        A 207 partial failure marks only the refused inputs; a call HubSpot refuses as a whole
        marks its inputs. Contacts without an email go through `upsert_contact` (phone) one by one.

        Raises:
            RetryableError, AuthError, CircuitOpenError: the batch could not be delivered (safe to
                retry whole: upserts by email are idempotent).
        """
        items: dict[int, BatchItem] = {}
        for indexes in wire.upsert_rounds(contacts, self.max_batch):
            inputs = [
                wire.upsert_input(contacts[i], await self._write_properties(contacts[i])) for i in indexes
            ]
            try:
                path = f"{CONTACTS}/batch/upsert"
                data = await self._call("POST", path, json={"inputs": inputs}, idempotent=True)
            except (InvalidRequestError, NotFoundError) as exc:
                items.update({i: BatchItem(i, error=exc.message) for i in indexes})
                continue
            items.update({item.index: item for item in mapped(wire.batch_items, data, indexes, contacts)})
        for i, contact in enumerate(contacts):
            if i in items:
                continue
            try:
                saved, created = await self.upsert_contact(contact)
                items[i] = BatchItem(i, saved, created=created)
            except (InvalidRequestError, NotFoundError) as exc:
                items[i] = BatchItem(i, error=exc.message)
        return [items[i] for i in range(len(contacts))]

    async def get_contacts_by_email(self, emails: list[str]) -> dict[str, Contact]:
        """Contacts by email, 100 per call (`batch/read`, idProperty email), keyed by the email
        lower-cased. Emails no contact has are left out (HubSpot lists them as OBJECT_NOT_FOUND
        in a 207 answer, which is not a failure here).

        Raises:
            RetryableError, AuthError, CircuitOpenError: a read could not be made.
        """
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        found: dict[str, Contact] = {}
        for first in range(0, len(wanted), self.max_batch):
            body = {
                "idProperty": "email",
                "inputs": [{"id": email} for email in wanted[first : first + self.max_batch]],
                "properties": self._properties.read_names(),
            }
            data = await self._call("POST", f"{CONTACTS}/batch/read", json=body, idempotent=True)
            for row in results(data):
                contact = mapped(wire.contact_from_wire, row)
                if contact.email:
                    found[contact.email.strip().lower()] = contact
        return found

    def snapshot(self) -> dict[str, Any]:
        return self._client.snapshot()

    async def aclose(self) -> None:
        await self._client.aclose()

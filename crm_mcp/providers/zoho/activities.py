"""What Zoho records about a lead or contact: notes, tasks, events (appointments), calls and
attachments. A mixin of `ZohoConnector` (which provides `_call`, `api_version`, `provider`).

- Notes: `POST /Notes` with `Parent_Id` naming the module and the record (v7/v8); a record's
  notes are its related list `/{module}/{id}/Notes`.
- Tasks, Events and Calls are modules of their own, tied to a lead by `What_Id` + `$se_module`
  or to a contact by `Who_Id`; a person's are found by search criteria on that lookup.
- Calls: Call_Type (Inbound / Outbound / Missed), Call_Start_Time, Call_Duration ("mm:ss"),
  Subject, Description, Owner. Creating one is not idempotent (no natural key): it is never
  re-sent after it may have reached Zoho; the caller keeps the returned id and updates it.
- Attachments: multipart upload (part `file`) to `/{module}/{id}/Attachments`, 20 MB at most.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crm_mcp.connectors.base import Appointment, CallActivity, Note, Task
from crm_mcp.errors import InvalidRequestError, NotFoundError, UpstreamUnavailableError

from . import wire
from .spec import CONTACTS, MAX_ATTACHMENT_BYTES, PAGE_MAX


class ZohoActivities:
    provider: str
    api_version: str
    max_attachment_bytes = MAX_ATTACHMENT_BYTES

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        raise NotImplementedError

    def _single(self, body: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def _create(self, module: str, record: Mapping[str, Any]) -> str:
        body = await self._call("POST", f"/{module}", json={"data": [dict(record)], "trigger": []})
        rid = wire.item_id(self._single(body))
        if not rid:
            raise UpstreamUnavailableError(f"zoho {module}: created without an id", provider=self.provider)
        return rid

    async def _read(self, module: str, record_id: str) -> dict[str, Any]:
        body = await self._call("GET", f"/{module}/{record_id}")
        rows = body.get("data") if isinstance(body, dict) else None
        if not rows or not isinstance(rows[0], dict):
            raise NotFoundError(
                f"zoho has no {module} record {record_id} (204 No Content)",
                provider=self.provider,
                status=404,
            )
        return rows[0]

    async def _linked(self, module: str, contact_id: str) -> list[dict[str, Any]]:
        """A person's records in an activity module, by the lookup that links them."""
        person_module, rid = wire.split_id(contact_id)
        lookup = "Who_Id" if person_module == CONTACTS else "What_Id"
        params = {"criteria": f"({lookup}:equals:{rid})", "per_page": PAGE_MAX}
        body = await self._call("GET", f"/{module}/search", params=params)
        return [r for r in body.get("data", [])] if isinstance(body, dict) else []

    def _mapped(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (wire.WireError, KeyError, ValueError, TypeError) as exc:
            raise UpstreamUnavailableError(
                f"zoho: unexpected record ({exc})", provider=self.provider
            ) from None

    # -- notes ------------------------------------------------------------------------------
    async def add_note(self, note: Note) -> Note:
        rid = await self._create("Notes", wire.note_record(note, self.api_version))
        return note.model_copy(update={"id": rid})

    async def list_notes(self, contact_id: str) -> list[Note]:
        module, rid = wire.split_id(contact_id)
        params = {"fields": "Note_Title,Note_Content,Created_Time", "per_page": PAGE_MAX}
        body = await self._call("GET", f"/{module}/{rid}/Notes", params=params)
        rows = body.get("data", []) if isinstance(body, dict) else []
        return [self._mapped(wire.note_from_record, r, contact_id) for r in rows]

    # -- tasks ------------------------------------------------------------------------------
    async def create_task(self, task: Task) -> Task:
        rid = await self._create("Tasks", wire.task_record(task))
        return task.model_copy(update={"id": rid})

    async def list_tasks(self, contact_id: str) -> list[Task]:
        rows = await self._linked("Tasks", contact_id)
        return [self._mapped(wire.task_from_record, r, contact_id) for r in rows]

    # -- appointments (Events) --------------------------------------------------------------
    async def create_appointment(self, appointment: Appointment) -> Appointment:
        rid = await self._create("Events", wire.event_record(appointment))
        return appointment.model_copy(update={"id": rid, "calendar_id": None})

    async def update_appointment(self, appointment_id: str, changes: dict[str, Any]) -> Appointment:
        """Raises: InvalidRequestError for an unknown field or status; NotFoundError."""
        try:
            record = wire.event_changes(changes)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"zoho appointment update: {exc}", provider=self.provider) from None
        if record:
            body = await self._call(
                "PUT", f"/Events/{appointment_id}", json={"data": [record], "trigger": []}, idempotent=True
            )
            self._single(body)
        return await self.get_appointment(appointment_id)

    async def get_appointment(self, appointment_id: str) -> Appointment:
        return self._mapped(wire.appointment_from_record, await self._read("Events", appointment_id))

    async def list_contact_appointments(self, contact_id: str) -> list[Appointment]:
        rows = await self._linked("Events", contact_id)
        found = [self._mapped(wire.appointment_from_record, r, contact_id) for r in rows]
        return sorted(found, key=lambda a: a.start_time)

    # -- calls ------------------------------------------------------------------------------
    async def log_call(self, call: CallActivity) -> CallActivity:
        """A Calls record on the lead or contact (one call: never re-sent once it may have landed)."""
        rid = await self._create("Calls", wire.call_record(call))
        return call.model_copy(update={"id": rid})

    async def find_call(self, contact_id: str, external_id: str) -> CallActivity | None:
        """The person's call logged with this `external_id` (kept as a `[ref:…]` line of its
        Description: Calls have no external-id field), or None. One search."""
        for row in await self._linked("Calls", contact_id):
            if wire.call_reference(row.get("Description")) == external_id:
                return self._mapped(wire.call_from_record, row)
        return None

    async def update_call(self, call_id: str, changes: Mapping[str, Any]) -> CallActivity:
        """Neutral changes (description, duration_seconds, owner_id, subject; `external_id`, when
        known, saves reading the call to keep its reference); the call as saved.

        Raises:
            InvalidRequestError: a change a call cannot take; NotFoundError: no such call.
        """
        ref = changes.get("external_id")
        try:
            record = wire.call_changes({k: v for k, v in changes.items() if k != "external_id"})
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"zoho call update: {exc}", provider=self.provider) from None
        if "Description" in record:  # keep the reference line (given, or read: one call more)
            if ref is None:
                ref = wire.call_reference((await self._read("Calls", call_id)).get("Description"))
            record["Description"] = wire.with_reference(record["Description"], str(ref) if ref else None)
        if record:
            body = await self._call(
                "PUT", f"/Calls/{call_id}", json={"data": [record], "trigger": []}, idempotent=True
            )
            self._single(body)
        return self._mapped(wire.call_from_record, await self._read("Calls", call_id))

    # -- attachments ------------------------------------------------------------------------
    async def attach_file(self, contact_id: str, filename: str, content: bytes, content_type: str) -> str:
        """Upload to the record's Attachments (multipart part `file`); the attachment's id.

        Raises:
            InvalidRequestError: the file is larger than Zoho takes (20 MB) or was refused.
        """
        if len(content) > self.max_attachment_bytes:
            raise InvalidRequestError(
                f"zoho attachments take at most {self.max_attachment_bytes} bytes; "
                f"{filename} has {len(content)}",
                provider=self.provider,
            )
        module, rid = wire.split_id(contact_id)
        files = {"file": (filename, content, content_type or "application/octet-stream")}
        body = await self._call("POST", f"/{module}/{rid}/Attachments", files=files, idempotent=False)
        attachment = wire.item_id(self._single(body))
        if not attachment:
            raise UpstreamUnavailableError("zoho attachment uploaded without an id", provider=self.provider)
        return attachment

    async def find_attachment(self, contact_id: str, filename: str) -> str | None:
        """The id of the record's attachment named `filename`, or None (one read; 204 = none)."""
        module, rid = wire.split_id(contact_id)
        params = {"fields": "id,File_Name,Size,Created_Time", "per_page": PAGE_MAX}
        body = await self._call("GET", f"/{module}/{rid}/Attachments", params=params)
        for row in body.get("data", []) if isinstance(body, dict) else []:
            if isinstance(row, dict) and row.get("File_Name") == filename and row.get("id"):
                return str(row["id"])
        return None

"""GoHighLevel location and calendar endpoints of the simulator: the location, its custom fields,
calendars, free slots and appointments (events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request

from crm_mcp.providers.gohighlevel.sandbox import store as ghl_store
from crm_mcp.providers.gohighlevel.sandbox.contact_store import render_contact
from crm_mcp.providers.gohighlevel.sandbox.location import GHLLocation
from crm_mcp.providers.gohighlevel.sandbox.schemas import ApiError, unprocessable, validate
from crm_mcp.providers.gohighlevel.sandbox.store import iso_offset, parse_time

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


class CalendarRoutes(GHLLocation):
    """Handlers for ``/locations/...`` and ``/calendars/...`` (and a contact's appointments)."""

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
            raise unprocessable(["model must be one of the following values: contact, opportunity, all"])
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
            raise unprocessable([f"{name} must be a number (epoch milliseconds)"]) from None

    def free_slots(self, req: Request, body: Any) -> tuple[int, Any]:
        cal = self._get(self.calendars, req.path_params["calendarId"], "Calendar")
        start, end = self._ms(req, "startDate"), self._ms(req, "endDate")
        if end < start:
            raise unprocessable(["endDate must be after startDate"])
        if end - start > timedelta(days=31):
            raise unprocessable(["Date range can not be more than 31 days"])
        try:
            out_tz = ZoneInfo(req.query_params.get("timezone") or self.tz.key)
        except (ValueError, KeyError):
            raise unprocessable(["timezone must be a valid IANA timezone"]) from None
        slots = ghl_store.free_slots(cal, self._busy(cal["id"]), start, end, self.tz, out_tz)
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
        offered = ghl_store.free_slots(cal, [], start, start, self.tz, self.tz)
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
            startTime=iso_offset(e["_start"], self.tz),
            endTime=iso_offset(e["_end"], self.tz),
            dateAdded=iso_offset(e["_added"], self.tz),
            dateUpdated=iso_offset(e["_updated"], self.tz),
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
        start = parse_time(b["startTime"], self.tz, "startTime")
        end = parse_time(b["endTime"], self.tz, "endTime") if b.get("endTime") else None
        end = end or start + timedelta(minutes=cal["slotDuration"])
        if end <= start:
            raise unprocessable(["endTime must be after startTime"])
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
            "title": b.get("title") or render_contact(contact).get("contactName") or "Appointment",
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
            start = parse_time(b["startTime"], self.tz, "startTime")
            end = start + (e["_end"] - e["_start"])
        if b.get("endTime"):
            end = parse_time(b["endTime"], self.tz, "endTime")
        if end <= start:
            raise unprocessable(["endTime must be after startTime"])
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
            raise unprocessable(["One of calendarId, userId or groupId is required"])
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

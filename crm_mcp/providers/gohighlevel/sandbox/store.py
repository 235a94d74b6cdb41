"""Location data of the GoHighLevel simulator: ids, timestamps, seeded calendars and custom
fields, and slot availability (no HTTP here).

Kept apart from the routes so what a connector depends on — id and time formats, the seeded
location, which slots a calendar offers — reads as plain functions over dicts. Contact rules are in
:mod:`.contact_store`, request schemas in :mod:`.schemas`.
"""

from __future__ import annotations

import random
import string
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crm_mcp.providers.gohighlevel.sandbox.schemas import unprocessable

# --------------------------------------------------------------------------- ids and time
_ALPHABET = string.ascii_letters + string.digits


class IdFactory:
    """20-char base62 ids from a seeded RNG, so a seeded run produces the same ids every time."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def new(self) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(20))

    def trace_id(self) -> str:
        return "-".join(
            "".join(self._rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
        )


def iso_z(dt: datetime) -> str:
    """Contacts style: ``2021-07-02T05:18:26.704Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_offset(dt: datetime, tz: ZoneInfo) -> str:
    """Appointment style: ``2021-06-23T03:30:00+05:30`` in the location's timezone."""
    return dt.astimezone(tz).replace(microsecond=0).isoformat()


def parse_time(value: str, tz: ZoneInfo, field: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise unprocessable([f"{field} must be a valid ISO 8601 date string"]) from None
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


# --------------------------------------------------------------------------- seeded location data
def seed_custom_fields(location_id: str) -> list[dict[str, Any]]:
    def field(
        n: int, name: str, key: str, data_type: str, model: str = "contact", **kw: Any
    ) -> dict[str, Any]:
        return {
            "id": f"SbxCf{n:015d}",
            "name": name,
            "fieldKey": f"{model}.{key}",
            "placeholder": "",
            "dataType": data_type,
            "position": n * 50,
            "picklistOptions": kw.get("options", []),
            "picklistImageOptions": [],
            "isAllowedCustomOption": False,
            "isMultiFileAllowed": False,
            "maxFileLimit": 0,
            "locationId": location_id,
            "model": model,
        }

    statuses = ["Scheduled", "Confirmed", "Cancelled", "Showed", "No Show"]
    return [
        field(1, "Appointment Status", "appointment_status", "SINGLE_OPTIONS", options=statuses),
        field(2, "Next Appointment Date", "next_appointment_date", "DATE"),
        field(3, "Lead Score", "lead_score", "NUMERICAL"),
        field(4, "Budget", "budget", "MONETORY"),
        field(5, "Move-in Date", "move_in_date", "DATE"),
        field(6, "Preferred Unit", "preferred_unit", "TEXT"),
        field(7, "Deal Source", "deal_source", "TEXT", model="opportunity"),
    ]


def seed_calendars(location_id: str, first_id: str) -> list[dict[str, Any]]:
    weekdays = [
        {"daysOfTheWeek": [d], "hours": [{"openHour": 9, "openMinute": 0, "closeHour": 17, "closeMinute": 0}]}
        for d in range(1, 6)
    ]

    def cal(cid: str, name: str, slug: str) -> dict[str, Any]:
        return {
            "id": cid,
            "locationId": location_id,
            "groupId": "",
            "name": name,
            "description": "",
            "slug": slug,
            "widgetSlug": slug,
            "calendarType": "event",
            "widgetType": "classic",
            "eventTitle": "{{contact.name}}",
            "eventColor": "#039be5",
            "isActive": True,
            "teamMembers": [],
            "slotDuration": 30,
            "slotDurationUnit": "mins",
            "slotInterval": 30,
            "slotIntervalUnit": "mins",
            "slotBuffer": 0,
            "preBuffer": 0,
            "appoinmentPerSlot": 1,
            "appoinmentPerDay": 0,
            "allowBookingAfter": 0,
            "allowBookingFor": 60,
            "allowBookingForUnit": "days",
            "openHours": weekdays,
            "enableRecurring": False,
            "autoConfirm": True,
            "allowReschedule": True,
            "allowCancellation": True,
            "availabilityType": 0,
            "availabilities": [],
            "notifications": [],
        }

    return [
        cal(first_id, "Sandbox Consultation", "sandbox-consultation"),
        cal(first_id[:-1] + "2", "Sandbox Property Tour", "sandbox-tour"),
    ]


# --------------------------------------------------------------------------- calendars
def ghl_weekday(d: date) -> int:
    """GHL's ``daysOfTheWeek`` counts from Sunday = 0."""
    return (d.weekday() + 1) % 7


def free_slots(
    calendar: dict[str, Any],
    busy: list[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    out_tz: ZoneInfo,
) -> dict[str, list[str]]:
    """Slots inside openHours (in the location's ``tz``), stepping by slotInterval, minus overlaps
    with ``busy``; keyed by day and written with the offset of the caller's ``out_tz``."""
    step = timedelta(minutes=calendar["slotInterval"])
    length = timedelta(minutes=calendar["slotDuration"])
    out: dict[str, list[str]] = {}
    day = start.astimezone(tz).date() - timedelta(days=1)
    while day <= end.astimezone(tz).date():
        for rule in calendar["openHours"]:
            if ghl_weekday(day) not in rule["daysOfTheWeek"]:
                continue
            for hours in rule["hours"]:
                t = datetime(day.year, day.month, day.day, hours["openHour"], hours["openMinute"], tzinfo=tz)
                close = t.replace(hour=hours["closeHour"], minute=hours["closeMinute"])
                while t + length <= close:
                    free = all(not (t < b_end and b_start < t + length) for b_start, b_end in busy)
                    if start <= t <= end and free:
                        local = t.astimezone(out_tz)
                        out.setdefault(local.date().isoformat(), []).append(local.isoformat())
                    t += step
        day += timedelta(days=1)
    return out

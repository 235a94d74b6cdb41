"""The data of one simulated GoHighLevel location and the lookups every route shares.

The contact routes and the calendar routes are separate classes over this one base, so each reads
as the endpoints of one resource while both work on the same tables under the sandbox's lock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request

from crm_mcp.providers.gohighlevel.sandbox.schemas import ApiError, unprocessable
from crm_mcp.providers.gohighlevel.sandbox.store import IdFactory, seed_calendars, seed_custom_fields


class GHLLocation:
    """The location's tables (contacts, notes, tasks, events) and its seeded calendars and fields."""

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
        self.ids = IdFactory(seed)
        self.custom_fields = seed_custom_fields(location_id)
        self.calendars = {c["id"]: c for c in seed_calendars(location_id, calendar_id)}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        with self.lock:
            for table in (self.contacts, self.notes, self.tasks, self.events):
                table.clear()

    # ------------------------------------------------------------------ helpers
    def _check_location(self, location_id: Any) -> None:
        if not location_id:
            raise unprocessable(["locationId should not be empty"])
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

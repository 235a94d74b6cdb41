"""GoHighLevel contact endpoints of the simulator: contacts, tags, notes and tasks."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from crm_mcp.providers.gohighlevel.sandbox.contact_store import (
    apply_contact_fields,
    find_duplicate,
    merge_tags,
    render_contact,
    search_contacts,
)
from crm_mcp.providers.gohighlevel.sandbox.location import GHLLocation
from crm_mcp.providers.gohighlevel.sandbox.schemas import ApiError, validate
from crm_mcp.providers.gohighlevel.sandbox.store import iso_z, parse_time


class ContactRoutes(GHLLocation):
    """Handlers for ``/contacts/...``; each takes the request and parsed body, returns (status, body)."""

    def _reject_duplicate(self, email: str | None, phone: str | None, exclude: str | None = None) -> None:
        pool = (c for c in self.contacts.values() if c["id"] != exclude)
        dup = find_duplicate(pool, email, phone)
        if dup:
            other, field = dup
            meta = {
                "contactName": render_contact(other).get("contactName"),
                "contactId": other["id"],
                "matchingField": field,
            }
            raise ApiError(400, "This location does not allow duplicated contacts.", meta=meta)

    def _write_contact(self, base: dict[str, Any], body: dict[str, Any], tags: list[str]) -> dict[str, Any]:
        """Apply on a copy so a 422 halfway through leaves the stored contact untouched."""
        new = json.loads(json.dumps(base))
        apply_contact_fields(new, body, self.custom_fields)
        new["tags"] = tags
        new["dateUpdated"] = iso_z(self._now())
        self.contacts[new["id"]] = new
        return render_contact(new)

    def _blank_contact(self) -> dict[str, Any]:
        now = iso_z(self._now())
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
            "contact": self._write_contact(self._blank_contact(), b, merge_tags([], b.get("tags") or []))
        }

    def get_contact(self, req: Request, body: Any) -> tuple[int, Any]:
        return 200, {"contact": render_contact(self._contact(req))}

    def update_contact(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "UpdateContactDto")
        c = self._contact(req)
        self._reject_duplicate(b.get("email"), b.get("phone"), exclude=c["id"])
        tags = merge_tags([], b["tags"] or []) if "tags" in b else c["tags"]
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
        dup = find_duplicate(self.contacts.values(), b.get("email"), b.get("phone"))
        base = dup[0] if dup else self._blank_contact()
        contact = self._write_contact(base, b, merge_tags(base["tags"], b.get("tags") or []))
        return 200, {"new": dup is None, "contact": contact, "traceId": self.ids.trace_id()}

    def search(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "SearchBodyV2DTO")
        self._check_location(b["locationId"])
        return 200, search_contacts(list(self.contacts.values()), b)

    def duplicate(self, req: Request, body: Any) -> tuple[int, Any]:
        q = req.query_params
        self._check_location(q.get("locationId"))
        dup = find_duplicate(self.contacts.values(), q.get("email"), q.get("number"))
        return 200, {"contact": render_contact(dup[0]) if dup else None}

    def add_tags(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "TagsDTO")
        c = self._contact(req)
        c["tags"] = merge_tags(c["tags"], b["tags"])
        c["dateUpdated"] = iso_z(self._now())
        return 201, {"tags": list(c["tags"])}

    def remove_tags(self, req: Request, body: Any) -> tuple[int, Any]:
        b = validate(body, "TagsDTO")
        c = self._contact(req)
        gone = {t.strip().lower() for t in b["tags"]}
        c["tags"] = [t for t in c["tags"] if t not in gone]
        c["dateUpdated"] = iso_z(self._now())
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
            "dateAdded": iso_z(self._now()),
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
            out["dueDate"] = iso_z(parse_time(out["dueDate"], self.tz, "dueDate"))
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

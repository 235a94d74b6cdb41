"""The simulated org's records: modules of records with Zoho's ids, system fields, validation,
per-record outcomes and search criteria. Pure data structures; the HTTP side is in `api`."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ORG_ID = "4876876000000001001"
OWNER = {"id": "4876876000000225013", "name": "Sandbox Owner", "email": "owner@example.com"}
MANDATORY = {
    "Leads": ("Last_Name",),
    "Contacts": ("Last_Name",),
    "Calls": ("Subject", "Call_Type", "Call_Start_Time"),
    "Tasks": ("Subject",),
    "Events": ("Event_Title", "Start_DateTime", "End_DateTime"),
    "Notes": ("Note_Content", "Parent_Id"),
}
MODULES = tuple(MANDATORY)
PERSON = ("Leads", "Contacts")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
CALL_TYPES = ("Inbound", "Outbound", "Missed")
_SYSTEM = {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By"}


def digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


@dataclass
class Outcome:
    """One record's answer inside `data[]`."""

    ok: bool
    code: str
    message: str
    details: dict[str, Any]
    action: str | None = None
    duplicate_field: str | None = None

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "details": self.details,
            "message": self.message,
            "status": "success" if self.ok else "error",
        }
        if self.action is not None:
            out["action"] = self.action
            out["duplicate_field"] = self.duplicate_field
        return out


def error(code: str, message: str, api_name: str | None, index: int) -> Outcome:
    details: dict[str, Any] = {}
    if api_name:
        details = {"api_name": api_name, "json_path": f"$.data[{index}].{api_name}"}
    return Outcome(False, code, message, details)


@dataclass
class Store:
    clock: Callable[[], float]
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {m: {} for m in MODULES})
    attachments: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(4876876000000451001))

    def clear(self) -> None:
        for table in self.tables.values():
            table.clear()
        self.attachments.clear()

    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).replace(microsecond=0).isoformat()

    def new_id(self) -> str:
        return str(next(self._ids))

    # -- validation ---------------------------------------------------------------------------
    def check(self, module: str, record: Mapping[str, Any], index: int, creating: bool) -> Outcome | None:
        if creating:
            for name in MANDATORY[module]:
                if record.get(name) in (None, ""):
                    return error("MANDATORY_NOT_FOUND", "required field not found", name, index)
        email = record.get("Email")
        if email not in (None, "") and not _EMAIL.fullmatch(str(email)):
            return error("INVALID_DATA", "invalid data", "Email", index)
        parent = record.get("Parent_Id")
        if (
            module == "Notes"
            and parent is not None
            and not (
                isinstance(parent, dict)
                and parent.get("id")
                and ((parent.get("module") or {}).get("api_name") in PERSON)
            )
        ):  # v7/v8 take {"module": {"api_name": …}, "id": …}; the old id + se_module shape is refused
            return error("INVALID_DATA", "invalid data", "Parent_Id", index)
        if module == "Calls" and record.get("Call_Type") not in (None, *CALL_TYPES):
            return error("INVALID_DATA", "invalid data", "Call_Type", index)
        for key in ("Call_Start_Time", "Start_DateTime", "End_DateTime"):
            if record.get(key) and not _is_datetime(record[key]):
                return error("INVALID_DATA", "invalid data", key, index)
        return None

    # -- writes -------------------------------------------------------------------------------
    def _stamp(self, saved: dict[str, Any]) -> dict[str, Any]:
        return {k: saved[k] for k in ("id", "Created_Time", "Modified_Time", "Created_By", "Modified_By")}

    def insert(self, module: str, record: Mapping[str, Any], index: int) -> Outcome:
        bad = self.check(module, record, index, creating=True)
        if bad:
            return bad
        now = self.now()
        saved = {k: v for k, v in record.items() if k not in _SYSTEM}
        saved.update(
            id=self.new_id(), Created_Time=now, Modified_Time=now, Created_By=OWNER, Modified_By=OWNER
        )
        saved.setdefault("Owner", OWNER)
        self.tables[module][saved["id"]] = saved
        return Outcome(True, "SUCCESS", "record added", self._stamp(saved))

    def update(self, module: str, rid: str, record: Mapping[str, Any], index: int) -> Outcome:
        saved = self.tables[module].get(rid)
        if saved is None:
            return error("INVALID_DATA", "the id given seems to be invalid", "id", index)
        bad = self.check(module, record, index, creating=False)
        if bad:
            return bad
        saved.update({k: v for k, v in record.items() if k not in _SYSTEM})
        saved["Modified_Time"] = self.now()
        return Outcome(True, "SUCCESS", "record updated", self._stamp(saved))

    def upsert(self, module: str, record: Mapping[str, Any], index: int, keys: list[str]) -> Outcome:
        for key in keys:
            value = record.get(key)
            if value in (None, ""):
                continue
            match = next((r for r in self.tables[module].values() if same(r.get(key), value, key)), None)
            if match is not None:
                out = self.update(module, match["id"], record, index)
                if out.ok:
                    out.action, out.duplicate_field = "update", key
                return out
        out = self.insert(module, record, index)
        if out.ok:
            out.action = "insert"
        return out

    # -- reads --------------------------------------------------------------------------------
    def rows(self, module: str) -> list[dict[str, Any]]:
        return sorted(self.tables[module].values(), key=lambda r: int(r["id"]))

    def search(self, module: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Records matching `criteria`, `email`, `phone` (all phone fields, digits as stored) or `word`.

        Raises:
            ValueError: criteria Zoho would refuse (INVALID_QUERY).
        """
        rows = self.rows(module)
        if "criteria" in params:
            test = parse_criteria(params["criteria"])
            return [r for r in rows if test(r)]
        if "email" in params:
            wanted = params["email"].strip().lower()
            return [r for r in rows if str(r.get("Email") or "").lower() == wanted]
        if "phone" in params:
            wanted = digits(params["phone"])
            return [r for r in rows if wanted and wanted in (digits(r.get("Phone")), digits(r.get("Mobile")))]
        if "word" in params:
            word = params["word"].strip().lower()
            return [
                r for r in rows if any(word in str(v).lower() for k, v in r.items() if isinstance(v, str))
            ]
        raise ValueError("one of criteria, email, phone or word is required")


def same(stored: Any, value: Any, key: str) -> bool:
    if key in ("Phone", "Mobile"):
        return bool(digits(value)) and digits(stored) == digits(value)
    return str(stored or "").strip().lower() == str(value).strip().lower()


def _is_datetime(value: Any) -> bool:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return parsed.tzinfo is not None


_CRITERION = re.compile(r"\(([A-Za-z0-9_$]+):(equals|starts_with|in):((?:\\.|[^()\\])*)\)")


def parse_criteria(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """`(F:op:V)` or `((F:op:V)and(F:op:V)…)` / `or`, at most 10 criteria, values with `\\`
    escapes. Lookup fields compare by their `id`.

    Raises:
        ValueError: anything else.
    """
    found = list(_CRITERION.finditer(text))
    if not found or len(found) > 10:
        raise ValueError("invalid query formed")
    rest = _CRITERION.sub("", text).strip()
    joiners = set(re.findall(r"and|or", rest))
    if re.sub(r"and|or|[()]", "", rest).strip() or len(joiners) > 1:
        raise ValueError("invalid query formed")

    def one(m: re.Match[str]) -> Callable[[Mapping[str, Any]], bool]:
        name, op, raw = m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))

        def test(r: Mapping[str, Any]) -> bool:
            value = r.get(name)
            if isinstance(value, dict):
                value = value.get("id")
            have = str(value or "").lower()
            if op == "equals":
                return have == raw.lower()
            if op == "starts_with":
                return have.startswith(raw.lower())
            return have in {v.strip().lower() for v in raw.split(",")}

        return test

    tests = [one(m) for m in found]
    if joiners == {"or"}:
        return lambda r: any(t(r) for t in tests)
    return lambda r: all(t(r) for t in tests)

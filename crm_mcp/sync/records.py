"""Cross-CRM record sync: the page command, the comparison behind it, and its handler.

`sync_records` copies contacts from one connection (the source) to another (the target). The tool
walks the source page by page, looks each page's contacts up in the target by a natural key
(`find_matches`), and decides per record with the pure `decide`: missing (create), changed
(update: a neutral field or a mapped custom field differs), same (nothing to do). A page that has
writes becomes ONE outbox command, `RecordsUpsert`, entity = the run, which also carries the
cursor of the next page and the run's counts so far: the stored pages are the run's checkpoint.

The handler upserts a page through the target's batch API where it has one (`max_batch` per
call), else one by one; every write is an upsert by natural key, so a repeated one is harmless.
A page may half-fail: a batch answer can refuse single records (HubSpot's 207) while the rest go
through. The handler records which records are done (as index ranges) before it reports the
refused ones, so a retry resends only what is not done: records already delivered are not written
again (which would also put back values someone may have changed in the target since). Refused
records fail the attempt for good (InvalidRequestError: resending unchanged data will not help);
the dead letter names them, the other records are delivered, and `retry_failed_sync` resends the
refused ones alone. A call that failed as a whole (5xx, 429, a timeout) is retried by the worker.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from crm_mcp.connectors.base import Batch, Connector, Contact, Contacts, require
from crm_mcp.errors import InvalidRequestError, NotFoundError
from crm_mcp.sync.commands import Command, ContactData

if TYPE_CHECKING:  # the tool imports this module at start-up; SQLAlchemy stays lazy
    from crm_mcp.state.models import SyncOperation

MatchOn = Literal["email", "phone"]
Action = Literal["create", "update", "unchanged", "skipped"]
# the neutral contact fields compared and copied; tags too where both CRMs have them
NEUTRAL_FIELDS = ("first_name", "last_name", "email", "phone", "company_name")
REFUSED_SHOWN = 20
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?(?:Z|[+-]00:?00)?)?")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class FieldPair:
    """A source custom field mapped to a target one (the schema analyzer's proposal).

    `source`/`target` are the fields' keys (what a write names); `source_read`/`target_read` the
    keys their values have in a contact read back (the field id where the CRM reads by id).
    """

    source: str
    target: str
    source_read: str
    target_read: str
    confidence: float


class RunTally(BaseModel):
    """A run's counts so far (stored with each page, so a resumed run reports the whole run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seen: int = 0
    create: int = 0
    update: int = 0
    unchanged: int = 0
    skipped: int = 0

    def plus(self, decisions: Iterable[Decision]) -> RunTally:
        counts = self.model_dump()
        for d in decisions:
            counts["seen"] += 1
            counts[d.action] += 1
        return RunTally(**counts)


class RecordsUpsert(Command):
    """One page of a cross-CRM sync run: the contacts to upsert into the target (this
    operation's connection), and where the run goes on (`next_cursor` of the source)."""

    action = "records.upsert"
    entity_type = "sync_run"

    run_id: str
    request: str  # fingerprint of the run's arguments: one key is one request
    source: str
    page: int
    cursor: str | None
    next_cursor: str | None
    tally: RunTally
    contacts: list[ContactData]

    def entity_id(self) -> str:
        return self.run_id


@dataclass(frozen=True)
class Decision:
    """What to do with one source record, and why (field -> (source value, target value))."""

    key: str | None
    action: Action
    source: Contact
    target: Contact | None = None
    diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)


# -- the comparison (pure) -----------------------------------------------------------------------
def _digits(value: str | None) -> str:
    return "".join(ch for ch in value or "" if ch.isdigit())[-10:]


def match_key(contact: Contact, match_on: MatchOn) -> str | None:
    """The natural key a record is matched by: its email lower-cased, or its phone's last ten
    digits (at least seven). None when the record has none."""
    if match_on == "email":
        return (contact.email or "").strip().lower() or None
    digits = _digits(contact.phone)
    return digits if len(digits) >= 7 else None


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def comparable(value: Any) -> str | None:
    """A value in the form both CRMs' versions of it compare equal in: trimmed lower-case text,
    numbers without a trailing `.0`, a day for a midnight instant, list items sorted and joined
    by `;` (a multi-select read as a list on one side and as `a;b` on the other)."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, int | float):
        return _number(float(value))
    if isinstance(value, list | tuple | set):
        items = sorted(c for c in (comparable(v) for v in value) if c)
        return ";".join(items) or None
    text = str(value).strip()
    if ";" in text:
        return comparable([part for part in text.split(";")])
    if _NUMBER.fullmatch(text):
        return _number(float(text))
    if day := _DAY.fullmatch(text):
        return day.group(1)
    return text.lower() or None


def _neutral(contact: Contact) -> dict[str, Any]:
    """The neutral fields' values; a record with only a full name has it split in two."""
    values = {f: getattr(contact, f) for f in NEUTRAL_FIELDS}
    if contact.name and not (contact.first_name or contact.last_name):
        first, _, last = contact.name.strip().partition(" ")
        values["first_name"], values["last_name"] = first or None, last.strip() or None
    return values


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "email":
        return (a or "").strip().lower() == (b or "").strip().lower()
    if name == "phone":
        return _digits(a) == _digits(b)
    return (str(a).strip() if a is not None else None) == (str(b).strip() if b is not None else None)


def diff_contacts(
    source: Contact, target: Contact, pairs: Sequence[FieldPair], *, tags: bool
) -> dict[str, tuple[Any, Any]]:
    """Field -> (source value, target value) for what the source has and the target lacks or
    holds differently. A value the source does not have is never a difference: a sync copies,
    it does not clear. Custom fields are named by their source key; tags count when `tags`
    (both CRMs have them) and the target lacks one of the source's."""
    out: dict[str, tuple[Any, Any]] = {}
    theirs = _neutral(target)
    for name, mine in _neutral(source).items():
        if mine not in (None, "") and not _same(name, mine, theirs[name]):
            out[name] = (mine, theirs[name])
    for pair in pairs:
        mine, held = source.custom_fields.get(pair.source_read), target.custom_fields.get(pair.target_read)
        if comparable(mine) is not None and comparable(mine) != comparable(held):
            out[pair.source] = (mine, held)
    if tags and {t.strip().lower() for t in source.tags} - {t.strip().lower() for t in target.tags}:
        out["tags"] = (sorted(source.tags), sorted(target.tags))
    return out


def decide(
    contacts: Sequence[Contact],
    matches: dict[str, Contact],
    pairs: Sequence[FieldPair],
    match_on: MatchOn,
    *,
    tags: bool,
) -> list[Decision]:
    """One decision per source record: skipped without a match key (or repeating one already
    decided on this page), create when the target has no record with it, update when fields
    differ, unchanged otherwise."""
    out: list[Decision] = []
    seen: set[str] = set()
    for contact in contacts:
        key = match_key(contact, match_on)
        if key is None or key in seen:
            out.append(Decision(key, "skipped", contact))
            continue
        seen.add(key)
        target = matches.get(key)
        if target is None:
            out.append(Decision(key, "create", contact))
            continue
        diff = diff_contacts(contact, target, pairs, tags=tags)
        out.append(Decision(key, "update" if diff else "unchanged", contact, target, diff))
    return out


def write_data(decision: Decision, pairs: Sequence[FieldPair], *, tags: bool) -> ContactData:
    """What to upsert into the target: everything the source has for a create; for an update the
    fields that differ, with the natural keys (email, phone) the upsert finds the record by."""
    src = decision.source
    wanted = None if decision.action == "create" else set(decision.diff) | {"email", "phone"}
    values = {
        name: value
        for name, value in _neutral(src).items()
        if value not in (None, "") and (wanted is None or name in wanted)
    }
    custom = {
        pair.target: src.custom_fields[pair.source_read]
        for pair in pairs
        if comparable(src.custom_fields.get(pair.source_read)) is not None
        and (wanted is None or pair.source in wanted)
    }
    copy_tags = tags and (wanted is None or "tags" in wanted)
    return ContactData(**values, tags=list(src.tags) if copy_tags else [], custom_fields=custom)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def in_window(contact: Contact, since: datetime | None) -> bool:
    """Whether a record changed at or after `since` (one that does not say when counts; a time
    without a zone is UTC)."""
    if since is None or contact.date_updated is None:
        return True
    return _utc(contact.date_updated) >= _utc(since)


async def find_matches(
    target: Contacts, contacts: Sequence[Contact], match_on: MatchOn
) -> dict[str, Contact]:
    """The target's records for these source records, by match key: one batch read per
    `max_batch` emails where the target has one, else a search per record.

    Raises:
        ConnectorError: a lookup failed (the whole page is looked up again on the next run).
    """
    keys = sorted({k for c in contacts if (k := match_key(c, match_on))})
    if match_on == "email" and isinstance(target, Batch):
        return await target.get_contacts_by_email(keys)
    found: dict[str, Contact] = {}
    for key in keys:
        page = await target.search_contacts(key, 10, None)
        hit = next((c for c in page.contacts if match_key(c, match_on) == key), None)
        if hit is not None:
            found[key] = hit
    return found


# -- delivery ------------------------------------------------------------------------------------
def spans(indexes: Iterable[int]) -> str:
    """{0, 1, 2, 5, 7, 8} -> "0-2,5,7-8": a page's done records, small enough to store."""
    out: list[str] = []
    for i in sorted(set(indexes)):
        if out and i == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-', 1)[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out)


def from_spans(text: str) -> set[int]:
    done: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        first, _, last = part.partition("-")
        done.update(range(int(first), int(last or first) + 1))
    return done


@dataclass
class _PageDelivery:
    """Where one page's delivery stands: records done (kept across attempts), creates, refusals."""

    done: set[int]
    created: int
    refused: dict[int, str] = field(default_factory=dict)

    def progress(self) -> dict[str, Any]:
        return {"done": spans(self.done), "created": self.created}


class RecordsUpsertHandler:
    """Delivers `records.upsert`: one page into the target, resending only what is not done."""

    def __init__(self, connector_for: Callable[[str], Connector]) -> None:
        self._connector_for = connector_for

    async def __call__(self, op: SyncOperation, ctx: Any) -> dict[str, Any]:
        cmd = RecordsUpsert.of(op)
        connector = self._connector_for(op.connection)
        progress = ctx.progress
        state = _PageDelivery(from_spans(progress.get("done", "")), int(progress.get("created", 0)))
        todo = [i for i in range(len(cmd.contacts)) if i not in state.done]
        if isinstance(connector, Batch):
            await self._batched(connector, cmd, todo, state, ctx)
        else:
            await self._one_by_one(require(connector, Contacts), cmd, todo, state, ctx)
        listed = [
            {"key": _key_of(cmd.contacts[i]), "error": state.refused[i][:200]} for i in sorted(state.refused)
        ]
        result = {
            **state.progress(),
            "page": cmd.page,
            "delivered": len(state.done),
            "refused": listed[:REFUSED_SHOWN],
            "refused_total": len(listed),
        }
        await ctx.checkpoint(result)  # stored with the outcome, a failure included
        if listed:
            raise _refusal(op.connection, connector.provider, cmd, len(state.done), listed)
        return result

    @staticmethod
    async def _batched(
        connector: Batch, cmd: RecordsUpsert, todo: list[int], state: _PageDelivery, ctx: Any
    ) -> None:
        """`max_batch` records per call; a record the answer refuses is refused alone."""
        size = max(1, connector.max_batch)
        for first in range(0, len(todo), size):
            chunk = todo[first : first + size]
            items = await connector.upsert_contacts([Contact(**cmd.contacts[i].model_dump()) for i in chunk])
            for item in items:
                if item.error or item.contact is None:
                    state.refused[chunk[item.index]] = item.error or "no record returned"
                else:
                    state.done.add(chunk[item.index])
                    state.created += item.created
            await ctx.checkpoint(state.progress())

    @staticmethod
    async def _one_by_one(
        writer: Contacts, cmd: RecordsUpsert, todo: list[int], state: _PageDelivery, ctx: Any
    ) -> None:
        """One upsert per record; a refused record (4xx) does not stop the others."""
        for i in todo:
            try:
                _saved, new = await writer.upsert_contact(Contact(**cmd.contacts[i].model_dump()))
            except (InvalidRequestError, NotFoundError) as exc:
                state.refused[i] = exc.message
                continue
            state.done.add(i)
            state.created += new
            await ctx.checkpoint(state.progress())


def _key_of(contact: ContactData) -> str:
    return contact.email or contact.phone or "(no email or phone)"


def _refusal(
    connection: str, provider: str, cmd: RecordsUpsert, delivered: int, refused: list[dict[str, str]]
) -> InvalidRequestError:
    shown = "; ".join(f"{r['key']}: {r['error']}" for r in refused[:5])
    more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
    return InvalidRequestError(
        f"{connection} refused {len(refused)} of {len(cmd.contacts)} record(s) of sync page "
        f"{cmd.page}: {shown}{more}. The other {delivered} were delivered.",
        provider=provider,
        hint="Fix the refused records in the source CRM (or the field in the target) and run "
        "sync_records again; retry_failed_sync resends only the refused records.",
    )


def build_records_handlers(
    connector_for: Callable[[str], Connector],
) -> dict[str, Callable[[SyncOperation, Any], Awaitable[dict[str, Any]]]]:
    """The handler of `records.upsert`, for `build_worker`."""
    return {RecordsUpsert.action: RecordsUpsertHandler(connector_for)}

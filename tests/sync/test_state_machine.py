"""The outbox as a state machine: enqueue / deliver / crash / fail / retry / duplicate webhook / breaker trip.

Hypothesis drives the real outbox (SQLite), the real worker and the real `appointment.create`
handler against an in-process fake CRM that records every effect, on a fake clock. A model kept
beside it predicts each operation's state, and three invariants are checked after every step:

- no loss: every operation enqueued is in the outbox and never dead; every one the model says is
  delivered has all its effects at the CRM (contact, appointment, note, task);
- no duplicate effect: at most one contact per email and one appointment, note and task per
  booking, however many times deliveries were crashed and retried;
- queue depth matches the model: each operation is pending, in flight or succeeded exactly as
  the model predicts (which one the worker claims next, when a lease expires, when a breaker
  reschedule comes due);
- guards as the model predicts: each operation's durable `read_before_create` is what the model
  says, and an attempt that runs without it reads nothing before it creates (a first delivery of
  a booking queued `fresh`, as create_appointment queues it, costs only its writes), while one
  that runs with it looks first.

A crash is the worker process dying between the CRM's success and our commit: the fake CRM
applies a write and then raises `Crash` (a BaseException, so nothing in the worker catches it),
or the handler returns and the crash hits before `mark_succeeded`. The dead worker is replaced by
a new one (new id, empty caches), as a restarted process would be. A crash after a create that
was not guarded (a first delivery) must be caught by the next attempt, which takes over the
expired lease and so looks first. A failure is a write that times out after the CRM applied it
(ambiguous: the retry must look first) or one refused before it was sent (the retry need not).
A breaker trip makes every CRM call raise `CircuitOpenError` with `retry_after` until the fake
clock passes the reopen time. At teardown the queue is drained and every booking must be at the
CRM exactly once.

Examples: 40 locally, 120 with CI set (profile `outbox-machine`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import func, select

from crm_mcp.connectors.base import Appointment as CRMAppointment
from crm_mcp.connectors.base import Contact, Note, Task
from crm_mcp.connectors.webhooks import IncomingEvent as Incoming
from crm_mcp.errors import CircuitOpenError, UpstreamUnavailableError
from crm_mcp.state import outbox
from crm_mcp.state.db import Database
from crm_mcp.state.models import Appointment, InboxEvent, Lead, SyncOperation
from crm_mcp.sync.actions import build_handlers
from crm_mcp.sync.inbox import process_pending, store
from crm_mcp.sync.worker import OutboxWorker
from crm_mcp.tools.appointments import create_command

ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
settings.register_profile(
    "outbox-machine",
    max_examples=120 if ON_CI else 40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
CONN = "fake"
CALENDAR = "cal-1"


def _event(text: str) -> None:
    """Count what happened for --hypothesis-show-statistics (the rule tests below run outside it)."""
    if currently_in_test_context():
        event(text)


class Crash(BaseException):
    """The worker process dies here (SIGKILL): no except clause in the worker sees it."""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeCRM:
    """An in-memory CRM behind the Connector protocol that records every effect it applies.

    `crash_after` makes the n-th write of the current delivery apply and then kill the process;
    `fail_at` makes the n-th write time out after it applied (`landed`) or be refused before it
    was sent; `open_until` makes every call fail with an open circuit until the clock reaches it.
    `reads` counts the look-ups before creates.
    """

    provider = "fake"
    connection = CONN

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.contacts: dict[str, Contact] = {}
        self.appointments: list[CRMAppointment] = []
        self.notes: list[Note] = []
        self.tasks: list[Task] = []
        self.open_until: datetime | None = None
        self.crash_after: int | None = None
        self.fail_at: tuple[int, bool] | None = None  # (n-th write, landed)
        self.failed: str | None = None  # "timeout" or "refused" once `fail_at` fired
        self.writes = 0
        self.attempted = 0
        self.reads = 0
        self._ids = 0

    # -- fault plumbing
    def _call(self) -> None:
        now = self.clock()
        if self.open_until is not None and now < self.open_until:
            wait = (self.open_until - now).total_seconds()
            raise CircuitOpenError("circuit open", until=None, retry_after=wait, provider=self.provider)

    def _writing(self) -> None:
        """Before a write is applied: a refused one never reaches the CRM."""
        self.attempted += 1
        if self.fail_at is not None and self.fail_at == (self.attempted, False):
            self.fail_at, self.failed = None, "refused"
            raise UpstreamUnavailableError("connection refused", provider=self.provider, sent=False)

    def _wrote(self) -> None:
        self.writes += 1
        if self.crash_after is not None and self.writes >= self.crash_after:
            self.crash_after = None
            raise Crash(f"killed after write {self.writes}")
        if self.fail_at is not None and self.fail_at == (self.attempted, True):
            self.fail_at, self.failed = None, "timeout"
            raise UpstreamUnavailableError("timed out (the CRM applied it)", provider=self.provider)

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    # -- what the appointment handler uses (capabilities: contacts, appointments, notes, tasks)
    async def ping(self) -> None:
        self._call()

    async def aclose(self) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        return {}

    async def get_contact(self, contact_id: str) -> Contact:
        raise NotImplementedError

    async def search_contacts(self, query: str | None, limit: int, cursor: str | None) -> Any:
        raise NotImplementedError

    async def set_contact_fields(self, contact_id: str, values: Any) -> None:
        self._call()

    async def update_appointment(self, appointment_id: str, changes: dict[str, Any]) -> CRMAppointment:
        raise NotImplementedError

    async def get_appointment(self, appointment_id: str) -> CRMAppointment:
        raise NotImplementedError

    async def upsert_contact(self, contact: Contact) -> tuple[Contact, bool]:
        self._call()
        self._writing()
        key = contact.email or contact.phone or ""
        existing = self.contacts.get(key)
        saved = contact.model_copy(update={"id": existing.id if existing else self._id("c")})
        self.contacts[key] = saved
        self._wrote()
        return saved, existing is None

    async def list_contact_appointments(self, contact_id: str) -> list[CRMAppointment]:
        self._call()
        self.reads += 1
        return [a for a in self.appointments if a.contact_id == contact_id]

    async def create_appointment(self, appointment: CRMAppointment) -> CRMAppointment:
        self._call()
        self._writing()
        saved = appointment.model_copy(update={"id": self._id("e")})
        self.appointments.append(saved)
        self._wrote()
        return saved

    async def list_notes(self, contact_id: str) -> list[Note]:
        self._call()
        self.reads += 1
        return [n for n in self.notes if n.contact_id == contact_id]

    async def add_note(self, note: Note) -> Note:
        self._call()
        self._writing()
        saved = note.model_copy(update={"id": self._id("n")})
        self.notes.append(saved)
        self._wrote()
        return saved

    async def list_tasks(self, contact_id: str) -> list[Task]:
        self._call()
        self.reads += 1
        return [t for t in self.tasks if t.contact_id == contact_id]

    async def create_task(self, task: Task) -> Task:
        self._call()
        self._writing()
        saved = task.model_copy(update={"id": self._id("t")})
        self.tasks.append(saved)
        self._wrote()
        return saved


@dataclass
class ModelOp:
    """What the model believes about one queued booking."""

    index: int
    key: str
    appointment_id: str
    email: str
    start: datetime
    created_at: datetime
    next_at: datetime
    fresh: bool = True
    lease_until: datetime | None = None
    done: bool = False
    guarded: bool = False  # the durable read_before_create the model predicts

    def __post_init__(self) -> None:
        self.guarded = not self.fresh

    @property
    def status(self) -> str:
        return "succeeded" if self.done else ("in_flight" if self.lease_until is not None else "pending")

    def due(self, now: datetime) -> bool:
        if self.done:
            return False
        return self.lease_until < now if self.lease_until is not None else self.next_at <= now


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="outbox-machine-"))
        self.db = Database(f"sqlite+aiosqlite:///{self.tmp / 'machine.db'}")
        self.run(self.db.upgrade())
        self.clock = Clock()
        self.crm = FakeCRM(self.clock)
        self.ops: list[ModelOp] = []
        self.webhooks: dict[str, str] = {}  # event id -> contact id
        self.restarts = 0
        self.worker = self._new_worker()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _new_worker(self) -> OutboxWorker:
        """A fresh worker process: new id, new handler caches."""
        self.restarts += 1
        real = build_handlers(self.db, lambda name: self.crm, self.clock)["appointment.create"]
        crm = self.crm

        async def create(op: SyncOperation, ctx: Any) -> dict[str, Any]:
            result = await real(op, ctx)
            if crm.crash_after is not None:  # the crash comes after the CRM work, before our commit
                crm.crash_after = None
                self._crashed_after_return = True
                raise Crash("killed before mark_succeeded")
            return result

        return OutboxWorker(
            self.db,
            {"appointment.create": create},
            worker_id=f"worker-{self.restarts}",
            concurrency=1,
            lease=LEASE,
            clock=self.clock,
        )

    def _next(self) -> ModelOp | None:
        due = [op for op in self.ops if op.due(self.clock())]
        return min(due, key=lambda op: (op.next_at, op.created_at)) if due else None

    # -- rules ----------------------------------------------------------------------------------

    @initialize(n=st.integers(min_value=1, max_value=6))
    def start_with_a_queue(self, n: int) -> None:
        """Every run starts with some bookings queued, so the other rules have work to act on."""
        for _ in range(n):
            self.enqueue(0)

    @rule(again=st.integers(min_value=0, max_value=3), fresh=st.booleans())
    def enqueue(self, again: int, fresh: bool = True) -> None:
        """Queue a new booking; `again` > 0 repeats an earlier request with its key (a replay).
        `fresh`: as create_appointment queues it (else as a repair does: guarded from the start)."""
        if again and self.ops:
            op = self.ops[again % len(self.ops)]
            created = self.run(self._enqueue(op))
            assert not created, "a repeated idempotency key made a second operation"
            return
        self.clock.advance(0.001)  # distinct created_at: the claim order is then fully determined
        i = len(self.ops)
        now = self.clock()
        op = ModelOp(
            index=i,
            key=f"book-{i}",
            appointment_id=f"appt-{i}",
            email=f"b{i % 4}@example.com",  # bookings share contacts: the upsert must not duplicate them
            start=datetime(2026, 12, 1, 9, tzinfo=UTC) + timedelta(hours=i),
            created_at=now,
            next_at=now,
            fresh=fresh,
        )
        assert self.run(self._enqueue(op))
        self.ops.append(op)

    async def _enqueue(self, op: ModelOp) -> bool:
        appt = Appointment(
            id=op.appointment_id,
            connection=CONN,
            contact_first_name="Pat",
            contact_last_name=str(op.index),
            contact_email=op.email,
            contact_phone=None,
            calendar_id=CALENDAR,
            start_time=op.start,
            end_time=op.start + timedelta(minutes=30),
            timezone="UTC",
            title=f"Visit {op.appointment_id}",
            notes=None,
            status="confirmed",
            source="mcp",
            created_at=op.created_at,
            updated_at=op.created_at,
            version=1,
        )
        async with self.db.begin_write() as session:
            _row, created = await outbox.enqueue(
                session,
                idempotency_key=op.key,
                connection=CONN,
                action="appointment.create",
                payload=create_command(appt).payload(),
                entity_type="appointment",
                entity_id=op.appointment_id,
                now=op.created_at,
                fresh=op.fresh,
            )
            if created:
                session.add(appt)
        return created

    @rule()
    def deliver(self) -> None:
        """One worker round: the next due operation is delivered (or rescheduled by an open breaker)."""
        self._round(crash_after=None)

    @rule(after_writes=st.integers(min_value=1, max_value=5))
    def crash(self, after_writes: int) -> None:
        """A worker round in which the process dies after the CRM applied the n-th write of this
        delivery (or after the last step, before the success is committed); a new worker process
        takes over. With the breaker open there is no write to die after: the round is a reschedule."""
        self._round(crash_after=after_writes)

    @rule(after_writes=st.integers(min_value=1, max_value=4), landed=st.booleans())
    def fail(self, after_writes: int, landed: bool) -> None:
        """A worker round in which the n-th write fails: it times out after the CRM applied it
        (`landed`: the retry must look first) or is refused before it was sent (the retry need not)."""
        self._round(crash_after=None, fail_at=(after_writes, landed))

    def _round(self, crash_after: int | None, fail_at: tuple[int, bool] | None = None) -> None:
        expected = self._next()
        if expected is not None and expected.lease_until is not None:
            expected.guarded = True  # taking over an expired lease: that attempt never recorded
        guarded = expected is not None and expected.guarded
        self.crm.writes, self.crm.attempted, self.crm.reads = 0, 0, 0
        self.crm.crash_after, self.crm.fail_at, self.crm.failed = crash_after, fail_at, None
        self._crashed_after_return = False
        try:
            done = self.run(self.worker.run_once())
        except Crash:
            assert expected is not None
            self._check_reads(expected, guarded, delivered=False)
            expected.lease_until = self.clock() + LEASE  # left leased by the dead worker
            self.worker = self._new_worker()
            _event(f"crash {'after the last step' if self._crashed_after_return else 'after a CRM write'}")
            _event(f"crash in a{' guarded' if guarded else 'n unguarded'} attempt")
            return
        finally:
            self.crm.crash_after, self.crm.fail_at = None, None
        assert done == (1 if expected else 0)
        if expected is None:
            _event("round: nothing was due")
            return
        if self.crm.failed is not None:  # retried later, with backoff (read back, not modelled)
            row = self._rows()[expected.key]
            assert row.status == "pending" and row.next_attempt_at > self.clock()
            self._check_reads(expected, guarded, delivered=False)
            expected.lease_until, expected.next_at = None, row.next_attempt_at
            expected.guarded = expected.guarded or self.crm.failed == "timeout"
            _event(f"write {self.crm.failed}: retry {'guarded' if expected.guarded else 'unguarded'}")
            return
        # Progress is written with the outcome, so a crash loses it: even a delivery whose every
        # step had been done before the crash calls the CRM again (reads that find the effects),
        # and an open breaker reschedules it.
        if self._breaker_open():
            assert self.crm.open_until is not None
            assert self.crm.reads == 0 and self.crm.writes == 0
            expected.lease_until, expected.next_at = None, self.crm.open_until
            _event("breaker rescheduled a delivery")
        else:
            self._check_reads(expected, guarded, delivered=True)
            expected.lease_until, expected.done = None, True
            _event(f"delivered {'after looking first' if guarded else 'with writes only'}")

    def _check_reads(self, op: ModelOp, guarded: bool, *, delivered: bool) -> None:
        """An unguarded attempt reads nothing; a guarded one that delivered looked first (every
        delivery that is not done has a create left, and a guarded attempt looks before it)."""
        if not guarded:
            assert self.crm.reads == 0, f"{op.key}: an unguarded attempt read {self.crm.reads} time(s)"
        elif delivered:
            assert self.crm.reads >= 1, f"{op.key}: a guarded attempt created without looking"

    @rule(
        seconds=st.sampled_from([0.5, 5.0, 29.0, 31.0, 90.0, 400.0]),
        crash_after=st.none() | st.integers(min_value=1, max_value=5),
    )
    def retry(self, seconds: float, crash_after: int | None) -> None:
        """Time passes (leases expire, reschedules come due), then the worker goes round again;
        that round may crash too (a retry of a crashed delivery can die again)."""
        self.clock.advance(seconds)
        self._round(crash_after)

    @rule(n=st.integers(min_value=0, max_value=5), copies=st.integers(min_value=1, max_value=3))
    def duplicate_webhook(self, n: int, copies: int) -> None:
        """The CRM delivers the same webhook event one or more times; it is stored and applied once."""
        event_id, contact_id = f"wh-{n}", f"crm-contact-{n % 3}"
        payload = {
            "type": "ContactUpdate",
            "id": contact_id,
            "firstName": "Web",
            "lastName": f"Hook {n % 3}",
            "email": f"hook{n % 3}@example.com",
            "dateUpdated": (T0 + timedelta(minutes=n)).isoformat(),
        }
        for _ in range(copies):
            self.run(
                store(
                    self.db, "gohighlevel", CONN, [Incoming(event_id, "ContactUpdate", payload)], self.clock()
                )
            )
        self.run(process_pending(self.db, now=self.clock()))
        self.webhooks[event_id] = contact_id

    @rule(seconds=st.integers(min_value=1, max_value=120))
    def breaker_trip(self, seconds: int) -> None:
        """The CRM's breaker opens: calls fail fast with CircuitOpenError(retry_after) until it reopens."""
        self.crm.open_until = self.clock() + timedelta(seconds=seconds)

    def _breaker_open(self) -> bool:
        return self.crm.open_until is not None and self.clock() < self.crm.open_until

    # -- invariants -----------------------------------------------------------------------------

    def _rows(self) -> dict[str, SyncOperation]:
        async def read() -> dict[str, SyncOperation]:
            async with self.db.sessions() as s:
                return {op.idempotency_key: op for op in (await s.execute(select(SyncOperation))).scalars()}

        return dict(self.run(read()))

    @invariant()
    def no_loss(self) -> None:
        rows = self._rows()
        assert set(rows) == {op.key for op in self.ops}, "an enqueued operation is missing"
        assert not [k for k, r in rows.items() if r.status == "dead"], "an operation went dead"
        for op in self.ops:
            if op.done:
                assert self._effects(op) == (1, 1, 1), (
                    f"{op.key} delivered but effects are {self._effects(op)}"
                )

    @invariant()
    def no_duplicate_effect(self) -> None:
        emails = Counter(c.email for c in self.crm.contacts.values())
        assert len(self.crm.contacts) == len(emails) and all(n == 1 for n in emails.values())
        for op in self.ops:
            assert all(n <= 1 for n in self._effects(op)), f"{op.key} has effects {self._effects(op)}"
        assert len(self.crm.appointments) <= len(self.ops)

        async def inbox() -> tuple[int, int]:
            async with self.db.sessions() as s:
                events = (await s.execute(select(func.count()).select_from(InboxEvent))).scalar_one()
                leads = (await s.execute(select(func.count()).select_from(Lead))).scalar_one()
            return int(events), int(leads)

        events, leads = self.run(inbox())
        assert events == len(self.webhooks), "a duplicate webhook was stored twice"
        assert leads == len(set(self.webhooks.values())), "a duplicate webhook was applied twice"

    @invariant()
    def queue_depth_matches_the_model(self) -> None:
        rows = self._rows()
        actual = {k: r.status for k, r in rows.items()}
        assert actual == {op.key: op.status for op in self.ops}
        # the durable flag, except where a dead worker's lease is not taken over yet
        flags = {k: r.read_before_create for k, r in rows.items() if r.status != "in_flight"}
        assert flags == {op.key: op.guarded for op in self.ops if op.status != "in_flight"}
        depth = sum(1 for r in rows.values() if r.status != "succeeded")
        assert depth == sum(1 for op in self.ops if not op.done)

    def _effects(self, op: ModelOp) -> tuple[int, int, int]:
        contact = next((c for c in self.crm.contacts.values() if c.email == op.email), None)
        if contact is None:
            return (0, 0, 0)
        events = sum(
            1 for a in self.crm.appointments if a.contact_id == contact.id and a.start_time == op.start
        )
        notes = sum(1 for n in self.crm.notes if f"crm-mcp:{op.appointment_id}:booking" in n.body)
        tasks = sum(1 for t in self.crm.tasks if f"crm-mcp:{op.appointment_id}:reminder" in (t.body or ""))
        return (events, notes, tasks)

    def teardown(self) -> None:
        try:
            self.drain()
        finally:
            self.run(self.db.dispose())
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def drain(self) -> None:
        """Let time pass and the worker run until the queue is empty: everything arrives exactly once."""
        self.crm.open_until = None
        self.crm.crash_after = None
        self.crm.fail_at = None
        latest = max([self.clock(), *(op.next_at for op in self.ops)])
        self.clock.now = latest + LEASE + timedelta(seconds=1)  # every lease expired, every retry due
        self.run(self.worker.run_until_idle())
        rows = self._rows()
        assert all(r.status == "succeeded" for r in rows.values()), Counter(r.status for r in rows.values())
        for op in self.ops:
            assert self._effects(op) == (1, 1, 1), f"{op.key}: {self._effects(op)}"


OutboxMachine.TestCase.settings = settings.get_profile("outbox-machine")
TestOutboxMachine = OutboxMachine.TestCase


# -- each rule on its own, deterministically ------------------------------------------------------


def machine() -> OutboxMachine:
    return OutboxMachine()


def check(m: OutboxMachine) -> None:
    m.no_loss()
    m.no_duplicate_effect()
    m.queue_depth_matches_the_model()


def test_rule_enqueue_and_replayed_enqueue() -> None:
    m = machine()
    try:
        m.enqueue(0)
        m.enqueue(0)
        m.enqueue(1)  # replays book-1's request: no new operation
        check(m)
        assert len(m.ops) == 2 and len(m._rows()) == 2
    finally:
        m.teardown()


def test_rule_deliver() -> None:
    m = machine()
    try:
        m.enqueue(0)
        m.enqueue(0)
        m.deliver()
        check(m)
        assert [op.status for op in m.ops] == ["succeeded", "pending"]
    finally:
        m.teardown()


def test_rule_crash_at_every_step_then_retry() -> None:
    for after_writes in range(1, 6):  # after the contact, event, note, task write; after the last step
        m = machine()
        try:
            m.enqueue(0)
            m.crash(after_writes)
            check(m)
            assert m.ops[0].status == "in_flight" and m.restarts == 2
            m.retry(5.0, None)  # lease still held by the dead worker: nothing happens
            assert m.ops[0].status == "in_flight"
            m.retry(31.0, None)  # lease expired: the new worker reclaims and finishes without repeating
            check(m)
            assert m.ops[0].done and m._effects(m.ops[0]) == (1, 1, 1)
            assert m._rows()["book-0"].attempts == 2
        finally:
            m.teardown()


def test_rule_duplicate_webhook() -> None:
    m = machine()
    try:
        m.duplicate_webhook(1, 3)
        m.duplicate_webhook(1, 2)
        m.duplicate_webhook(4, 1)  # another event about the same contact: one lead still
        check(m)
        assert m.webhooks == {"wh-1": "crm-contact-1", "wh-4": "crm-contact-1"}
    finally:
        m.teardown()


def test_rule_breaker_trip_reschedules_without_effects() -> None:
    m = machine()
    try:
        m.enqueue(0)
        m.breaker_trip(60)
        m.deliver()
        check(m)
        row = m._rows()["book-0"]
        assert (row.status, row.attempts) == ("pending", 0)  # a wait, not a failed attempt
        assert row.next_attempt_at == T0 + timedelta(seconds=60.001)
        assert "CircuitOpenError" in (row.last_error or "") and m.crm.appointments == []
        m.retry(59.0, None)  # not due yet
        assert m.ops[0].status == "pending"
        m.retry(1.0, None)
        check(m)
        assert m.ops[0].done
    finally:
        m.teardown()


def test_rule_crash_after_an_unguarded_create_is_caught_by_the_next_attempt() -> None:
    for after_writes in (2, 3, 4):  # after the appointment, the note, the task: no natural key
        m = machine()
        try:
            m.enqueue(0, fresh=True)
            m.crash(after_writes)
            assert m.crm.reads == 0  # the first delivery did not look before it created
            m.retry(31.0, None)  # the lease expired: the next attempt takes over and looks first
            check(m)
            assert m.ops[0].done and m.crm.reads == 3 and m._effects(m.ops[0]) == (1, 1, 1)
            assert m._rows()["book-0"].read_before_create is True
        finally:
            m.teardown()


def test_rule_a_timeout_after_the_crm_applied_a_write_guards_the_retry() -> None:
    m = machine()
    try:
        m.enqueue(0, fresh=True)
        m.fail(3, landed=True)  # the note's write times out after the CRM applied it
        check(m)
        row = m._rows()["book-0"]
        assert (row.status, row.read_before_create) == ("pending", True)
        assert set(row.result or {}) >= {"contact_id", "event_id"}  # recorded with the failure
        m.retry(400.0, None)
        check(m)
        assert m.ops[0].done and m.crm.reads == 2  # the note (found) and the task; not the appointment
        assert m._effects(m.ops[0]) == (1, 1, 1)
    finally:
        m.teardown()


def test_rule_a_write_refused_before_it_was_sent_keeps_the_retry_unguarded() -> None:
    m = machine()
    try:
        m.enqueue(0, fresh=True)
        m.fail(2, landed=False)  # the appointment's connection was refused: nothing reached the CRM
        check(m)
        assert m._rows()["book-0"].read_before_create is False
        m.retry(400.0, None)
        check(m)
        assert m.ops[0].done and m.crm.reads == 0 and m._effects(m.ops[0]) == (1, 1, 1)
    finally:
        m.teardown()


def test_rule_an_operation_queued_without_fresh_looks_from_its_first_attempt() -> None:
    m = machine()
    try:
        m.enqueue(0, fresh=False)  # as a validate_sync repair queues a create
        m.deliver()
        check(m)
        assert m.ops[0].done and m.crm.reads == 3
    finally:
        m.teardown()

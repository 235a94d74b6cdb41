"""SQLAlchemy 2.0 models: the local system of record, the outbox and its audit trail.

Every timestamp is stored as UTC and read back tz-aware on every backend (`UTCDateTime`), so code
can compare datetimes without caring whether it runs on SQLite or PostgreSQL. A `connection`
column holds the connection *name* (e.g. ``gohighlevel``) rather than a foreign key, because
connections configured from environment variables have no row in `connections`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_mcp.observability.context import correlation_id_for_new_work, trace_carrier

OP_STATUSES = ("pending", "in_flight", "succeeded", "dead")
APPOINTMENT_STATUSES = ("scheduled", "confirmed", "cancelled", "completed", "no_show")  # the neutral ones
LOG_OUTCOMES = ("success", "retry", "dead", "rescheduled")

# Named constraints keep alembic batch migrations on SQLite deterministic.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A tz-aware UTC datetime on every backend.

    SQLite has no time zone storage: values are converted to UTC and stored naive (so string
    comparison orders them correctly), then marked UTC on the way out. Naive inputs are taken
    to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Autoincrementing integer ids: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Connection(Base):
    """A stored CRM connection (credentials encrypted at rest; the key id names the key used)."""

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128), unique=True)
    credentials_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Appointment(Base):
    """The local system of record for a booking; `version` increments on every local change."""

    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint(
            "status IN ('scheduled','confirmed','cancelled','completed','no_show')", name="status"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection: Mapped[str] = mapped_column(String(128), index=True)
    contact_first_name: Mapped[str | None] = mapped_column(String(255))
    contact_last_name: Mapped[str | None] = mapped_column(String(255))
    contact_email: Mapped[str | None] = mapped_column(String(320), index=True)
    contact_phone: Mapped[str | None] = mapped_column(String(64))
    calendar_id: Mapped[str | None] = mapped_column(String(128))
    start_time: Mapped[datetime]
    end_time: Mapped[datetime | None]
    timezone: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(255))
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    source: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Lead(Base):
    """A captured lead, qualified locally and pushed to the CRM through the outbox."""

    __tablename__ = "leads"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection: Mapped[str] = mapped_column(String(128), index=True)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="new")
    budget: Mapped[str | None] = mapped_column(String(64))
    timeline: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExternalRef(Base):
    """Local id <-> remote id per connection: how a retried create finds what it already made."""

    __tablename__ = "external_refs"
    __table_args__ = (UniqueConstraint("connection", "local_type", "local_id", "remote_type"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    connection: Mapped[str] = mapped_column(String(128))
    local_type: Mapped[str] = mapped_column(String(32))
    local_id: Mapped[str] = mapped_column(String(64))
    remote_type: Mapped[str] = mapped_column(String(32))
    remote_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncOperation(Base):
    """The outbox. `result` doubles as the step checkpoint so a retried handler resumes."""

    __tablename__ = "sync_operations"
    __table_args__ = (
        CheckConstraint("status IN ('pending','in_flight','succeeded','dead')", name="status"),
        # The fair claim (outbox.claim_due): the connections with pending work by a skip scan,
        # each one's oldest due operations as one range; counts by status read it alone.
        Index("ix_sync_operations_claim", "status", "connection", "next_attempt_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    connection: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    deadline_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Whether an attempt must look for what it creates in the CRM before creating it. Only ever
    # goes from False to True: False when the queuer vouched that nothing of this operation can be
    # in the CRM yet (`enqueue(fresh=True)`), True for good once an attempt may have written what
    # its stored progress does not record. See `crm_mcp.sync.context`.
    read_before_create: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The tool call that queued it (docs/observability.md): its correlation id, and its span's W3C
    # trace context for the delivery span to link to. Filled from the context of whoever inserts.
    correlation_id: Mapped[str | None] = mapped_column(String(64), default=correlation_id_for_new_work)
    trace_context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=trace_carrier)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """One row per dead operation (reused if it dies again), with every attempt's error."""

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    operation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sync_operations.id", ondelete="CASCADE"), unique=True
    )
    connection: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    error_history: Mapped[list[Any]] = mapped_column(default=list)
    dead_at: Mapped[datetime]
    retried_at: Mapped[datetime | None]
    retry_count: Mapped[int] = mapped_column(Integer, default=0)


class SyncLog(Base):
    """One row per delivery attempt: the audit trail and the source of success-rate numbers."""

    __tablename__ = "sync_log"
    __table_args__ = (Index("ix_sync_log_finished_at", "finished_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    operation_id: Mapped[str] = mapped_column(String(36), index=True)
    connection: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    error_type: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class InboxEvent(Base):
    """A received webhook, deduplicated on its event id within its connection before we answer 2xx
    (event ids are unique only within the sender's account: one tenant's id must never make
    another tenant's event a duplicate)."""

    __tablename__ = "inbox_events"
    __table_args__ = (UniqueConstraint("provider", "connection", "event_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    connection: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(128))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


class WorkerHeartbeat(Base):
    """Liveness of outbox workers, so status can tell "no worker" from "worker is slow"."""

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]
    pid: Mapped[int] = mapped_column(Integer)
    processed: Mapped[int] = mapped_column(Integer, default=0)


class CallLog(Base):
    """One telephony call session and what the call-log pipeline did with it.

    The unique (source, session_id) is the pipeline's idempotency: a session is queued once, in
    the same transaction as the page command that delivers it, however often its window is pulled.
    """

    __tablename__ = "call_logs"
    __table_args__ = (UniqueConstraint("source", "session_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(128), index=True)
    operation_id: Mapped[str | None] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(index=True)
    direction: Mapped[str] = mapped_column(String(16))
    result: Mapped[str] = mapped_column(String(16))
    number: Mapped[str | None] = mapped_column(String(64))
    extension: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|logged|failed
    recording: Mapped[str] = mapped_column(String(16), default="none")  # none|pending|attached|linked|...
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)  # contacts, match, activity ids
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CallPull(Base):
    """Where the scheduled call-log pull stands for one telephony connection: its high-water mark
    (everything before it was queued) and the page it is on inside the current window."""

    __tablename__ = "call_pulls"

    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    high_water: Mapped[datetime | None]
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    cursor: Mapped[str | None] = mapped_column(Text)
    last_run_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ConnectionState(Base):
    """What a process knows about a connection, for the other processes to read.

    `source` says whose knowledge it is: ``preflight`` (the last connection check: token, tenant,
    calendar; `ok`, failing `since`, and each check in `data`), or a process id (that process's
    breaker and rate-limit snapshot in `data`, republished every few seconds while it runs). The
    CLI reads the server's breakers and the checks here, not its own empty ones.
    """

    __tablename__ = "connection_state"

    connection: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime]
    ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    since: Mapped[datetime | None]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

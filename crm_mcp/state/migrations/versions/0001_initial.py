"""Initial schema: local records, outbox, dead letters, sync log, inbox and worker heartbeats.

Frozen: types are spelled out here rather than imported from models, so later model changes
never rewrite history. UTC timestamps are DateTime(timezone=True) (what models.UTCDateTime
renders as DDL).

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "appointments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=False),
        sa.Column("contact_first_name", sa.String(length=255), nullable=True),
        sa.Column("contact_last_name", sa.String(length=255), nullable=True),
        sa.Column("contact_email", sa.String(length=320), nullable=True),
        sa.Column("contact_phone", sa.String(length=64), nullable=True),
        sa.Column("calendar_id", sa.String(length=128), nullable=True),
        sa.Column("start_time", TS, nullable=False),
        sa.Column("end_time", TS, nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('new','confirmed','cancelled','completed','showed','noshow')",
            name=op.f("ck_appointments_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    op.create_index(op.f("ix_appointments_connection"), "appointments", ["connection"])
    op.create_index(op.f("ix_appointments_contact_email"), "appointments", ["contact_email"])

    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("credentials_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
        sa.UniqueConstraint("name", name=op.f("uq_connections_name")),
    )
    op.create_table(
        "external_refs",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=False),
        sa.Column("local_type", sa.String(length=32), nullable=False),
        sa.Column("local_id", sa.String(length=64), nullable=False),
        sa.Column("remote_type", sa.String(length=32), nullable=False),
        sa.Column("remote_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_refs")),
        sa.UniqueConstraint(
            "connection",
            "local_type",
            "local_id",
            "remote_type",
            name=op.f("uq_external_refs_connection_local_type_local_id_remote_type"),
        ),
    )
    op.create_table(
        "inbox_events",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("processed_at", TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_inbox_events_provider_event_id")),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=False),
        sa.Column("first_name", sa.String(length=255), nullable=True),
        sa.Column("last_name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("budget", sa.String(length=64), nullable=True),
        sa.Column("timeline", sa.String(length=64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
    )
    op.create_index(op.f("ix_leads_connection"), "leads", ["connection"])
    op.create_index(op.f("ix_leads_email"), "leads", ["email"])

    op.create_table(
        "sync_log",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_type", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_log")),
    )
    op.create_index("ix_sync_log_finished_at", "sync_log", ["finished_at"])
    op.create_index(op.f("ix_sync_log_operation_id"), "sync_log", ["operation_id"])

    op.create_table(
        "sync_operations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("deadline_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('pending','in_flight','succeeded','dead')", name=op.f("ck_sync_operations_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_operations")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_sync_operations_idempotency_key")),
    )
    op.create_index(op.f("ix_sync_operations_connection"), "sync_operations", ["connection"])
    op.create_index(
        "ix_sync_operations_status_next_attempt_at", "sync_operations", ["status", "next_attempt_at"]
    )

    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_heartbeats")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("connection", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error_history", sa.JSON(), nullable=False),
        sa.Column("dead_at", TS, nullable=False),
        sa.Column("retried_at", TS, nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["sync_operations.id"],
            name=op.f("fk_dead_letters_operation_id_sync_operations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("operation_id", name=op.f("uq_dead_letters_operation_id")),
    )
    op.create_index(op.f("ix_dead_letters_connection"), "dead_letters", ["connection"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dead_letters_connection"), table_name="dead_letters")

    op.drop_table("dead_letters")
    op.drop_table("worker_heartbeats")
    op.drop_index("ix_sync_operations_status_next_attempt_at", table_name="sync_operations")
    op.drop_index(op.f("ix_sync_operations_connection"), table_name="sync_operations")

    op.drop_table("sync_operations")
    op.drop_index(op.f("ix_sync_log_operation_id"), table_name="sync_log")
    op.drop_index("ix_sync_log_finished_at", table_name="sync_log")

    op.drop_table("sync_log")
    op.drop_index(op.f("ix_leads_email"), table_name="leads")
    op.drop_index(op.f("ix_leads_connection"), table_name="leads")

    op.drop_table("leads")
    op.drop_table("inbox_events")
    op.drop_table("external_refs")
    op.drop_table("connections")
    op.drop_index(op.f("ix_appointments_contact_email"), table_name="appointments")
    op.drop_index(op.f("ix_appointments_connection"), table_name="appointments")

    op.drop_table("appointments")

"""call_logs and call_pulls: the call-log pipeline's idempotency and its checkpoint.

Frozen: types spelled out, as in 0001.

Revision ID: 0006
Revises: 0005
Create Date: 2027-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_logs",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("number", sa.String(64), nullable=True),
        sa.Column("extension", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("recording", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_logs")),
        sa.UniqueConstraint("source", "session_id", name=op.f("uq_call_logs_source_session_id")),
    )
    op.create_index(op.f("ix_call_logs_target"), "call_logs", ["target"])
    op.create_index(op.f("ix_call_logs_started_at"), "call_logs", ["started_at"])
    op.create_table(
        "call_pulls",
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("high_water", TS, nullable=True),
        sa.Column("window_start", TS, nullable=True),
        sa.Column("window_end", TS, nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("last_run_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_call_pulls")),
    )


def downgrade() -> None:
    op.drop_table("call_pulls")
    op.drop_index(op.f("ix_call_logs_started_at"), "call_logs")
    op.drop_index(op.f("ix_call_logs_target"), "call_logs")
    op.drop_table("call_logs")

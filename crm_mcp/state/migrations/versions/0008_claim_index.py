"""The fair claim's index (status, connection, next_attempt_at, created_at) replaces (status,
next_attempt_at).

`outbox.claim_due` finds the connections with pending work by a skip scan of it (one index seek per
connection) and takes each connection's oldest due operations as one ordered range of it, so a
claim costs the same beside a backlog of fifty or fifty thousand operations (it ranked every due
operation before: 15 ms a claim on SQLite, 23 ms on PostgreSQL, beside 5,000). It serves what
the old index served (an equal status, then a range or an order), and every status change updates
one index fewer than it would with both.

Revision ID: 0008
Revises: 0007
Create Date: 2027-02-15
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_sync_operations_status_next_attempt_at", table_name="sync_operations")
    op.create_index(
        "ix_sync_operations_claim",
        "sync_operations",
        ["status", "connection", "next_attempt_at", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_sync_operations_claim", table_name="sync_operations")
    op.create_index(
        "ix_sync_operations_status_next_attempt_at", "sync_operations", ["status", "next_attempt_at"]
    )

"""sync_operations.correlation_id and trace_context: follow a tool call into its delivery.

The correlation id minted for the tool call that queued an operation, and the W3C trace context
(`traceparent`, `tracestate`) of that call's span, so that the worker's delivery logs carry the
same id and its delivery span links back to the call (docs/observability.md). Both are nullable:
operations queued before this migration, or outside a tool call, have neither.

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_operations") as batch:
        batch.add_column(sa.Column("correlation_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("trace_context", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_operations") as batch:
        batch.drop_column("trace_context")
        batch.drop_column("correlation_id")

"""sync_operations.read_before_create: whether an attempt must look before it creates.

A first delivery of a booking pays only its writes; the read-before-create guards run when an
earlier attempt may have reached the CRM (DESIGN §5). The flag that decides it is durable and
only ever goes from false to true (see `crm_mcp.sync.context`). Operations already queued when
this runs keep the guarded behaviour they were queued under: the column defaults to true.

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_operations") as batch:
        batch.add_column(
            sa.Column("read_before_create", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_operations") as batch:
        batch.drop_column("read_before_create")

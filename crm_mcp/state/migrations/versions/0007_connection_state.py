"""connection_state: preflight results and each process's breaker / rate-limit snapshot.

The server checks its connections (token, tenant, calendar) and publishes its breakers and
limiters here, so that `crm-mcp status`, `crm-mcp connections list` and a write tool in another
process all read the same facts (see `crm_mcp.preflight` and `crm_mcp.state.connection_state`).

Revision ID: 0007
Revises: 0006
Create Date: 2027-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)  # frozen: types spelled out, as in 0001

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connection_state",
        sa.Column("connection", sa.String(128), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("since", TS, nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("connection", "source", name="pk_connection_state"),
    )


def downgrade() -> None:
    op.drop_table("connection_state")

"""Webhook dedupe per connection: UNIQUE(provider, connection, event_id) on inbox_events.

The inbox deduplicated on (provider, event_id) alone, so one tenant's event id made another
tenant's real event with the same id a "duplicate" that was answered 200 and dropped (event ids
are only unique within the sender's account, and a sender may choose them). Events are now
deduplicated within the connection they arrived for.

Downgrading restores the old key; events that share an id across connections cannot all stay
under it, so every such event but the first received is deleted first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbox_events") as batch:
        batch.drop_constraint(op.f("uq_inbox_events_provider_event_id"), type_="unique")
        batch.create_unique_constraint(
            op.f("uq_inbox_events_provider_connection_event_id"), ["provider", "connection", "event_id"]
        )


def downgrade() -> None:
    inbox = sa.table("inbox_events", sa.column("id"), sa.column("provider"), sa.column("event_id"))
    first = sa.select(sa.func.min(inbox.c.id)).group_by(inbox.c.provider, inbox.c.event_id).scalar_subquery()
    op.execute(inbox.delete().where(inbox.c.id.not_in(first)))
    with op.batch_alter_table("inbox_events") as batch:
        batch.drop_constraint(op.f("uq_inbox_events_provider_connection_event_id"), type_="unique")
        batch.create_unique_constraint(op.f("uq_inbox_events_provider_event_id"), ["provider", "event_id"])

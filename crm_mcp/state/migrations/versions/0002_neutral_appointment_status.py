"""Appointment statuses in the neutral vocabulary: scheduled | confirmed | cancelled | completed | no_show.

The first schema stored GoHighLevel's words (`new`, `showed`, `noshow`) beside ours; the engine
now speaks one vocabulary for every CRM and each provider maps its own words at its edge.
Existing rows are rewritten (new -> scheduled, showed -> completed, noshow -> no_show). Queued
outbox payloads need nothing: the tools only ever queued confirmed, cancelled and completed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('new','confirmed','cancelled','completed','showed','noshow')"
NEW = "status IN ('scheduled','confirmed','cancelled','completed','no_show')"
RENAMES = {"new": "scheduled", "showed": "completed", "noshow": "no_show"}


def _rewrite(renames: dict[str, str]) -> None:
    appointments = sa.table("appointments", sa.column("status", sa.String))
    for old, new in renames.items():
        op.execute(appointments.update().where(appointments.c.status == old).values(status=new))


def upgrade() -> None:
    with op.batch_alter_table("appointments") as batch:
        batch.drop_constraint(op.f("ck_appointments_status"), type_="check")
    _rewrite(RENAMES)
    with op.batch_alter_table("appointments") as batch:
        batch.create_check_constraint(op.f("ck_appointments_status"), NEW)


def downgrade() -> None:
    with op.batch_alter_table("appointments") as batch:
        batch.drop_constraint(op.f("ck_appointments_status"), type_="check")
    _rewrite({"scheduled": "new", "no_show": "noshow"})
    with op.batch_alter_table("appointments") as batch:
        batch.create_check_constraint(op.f("ck_appointments_status"), OLD)

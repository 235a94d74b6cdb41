"""Copy the whole state from one database to another (`crm-mcp db migrate-to URL`).

The typical move is from the embedded SQLite file to PostgreSQL when a deployment grows to
several workers. Both are migrated to the newest schema first; then every table is copied in
dependency order (a referenced row before the rows that reference it), in batches ordered by
primary key, with every value going through the column types (credentials stay encrypted as
they are, with their key id: the target needs the same CRM_MCP_SECRET_KEY). Afterwards the row
count of every table is compared, and PostgreSQL's id sequences are moved past the copied ids.

A target that already holds rows is refused unless `force`, which empties it first. Stop the
servers and workers that use the source first: what they write during the copy is not copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Integer, Table, delete, func, insert, select, text

from crm_mcp.errors import StateError
from crm_mcp.state.db import Database
from crm_mcp.state.models import Base

BATCH = 1000

# (table, rows copied so far in it, rows in it): called after each batch
Progress = Callable[[str, int, int], None]


@dataclass
class MigrationReport:
    counts: dict[str, int] = field(default_factory=dict)  # rows per table, verified on both sides

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def tables() -> list[Table]:
    """Every table of the schema, a referenced one before the ones that reference it."""
    return list(Base.metadata.sorted_tables)


async def count_rows(db: Database, table: Table) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def migrate(
    source: Database,
    target: Database,
    *,
    force: bool = False,
    batch: int = BATCH,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy every row of `source` into `target` (see the module docstring).

    Raises:
        StateError: the target holds rows and `force` is off; or a count differs afterwards.
    """
    if source.url == target.url:
        raise StateError("the source and the target are the same database")
    await source.upgrade()
    await target.upgrade()
    order = tables()
    occupied = {t.name: n for t in order if (n := await count_rows(target, t))}
    if occupied and not force:
        listed = ", ".join(f"{name} ({n})" for name, n in occupied.items())
        raise StateError(
            f"the target database is not empty: {listed}",
            hint="Point at an empty database, or pass --force to delete what it holds first.",
        )
    if occupied:
        async with target.engine.begin() as conn:
            for table in reversed(order):
                await conn.execute(delete(table))
    report = MigrationReport()
    for table in order:
        total = await count_rows(source, table)
        copied = 0
        if progress is not None:
            progress(table.name, 0, total)
        keys = list(table.primary_key.columns) or list(table.columns)
        while copied < total:
            async with source.engine.connect() as conn:
                rows = (await conn.execute(select(table).order_by(*keys).limit(batch).offset(copied))).all()
            if not rows:
                break
            async with target.engine.begin() as conn:
                await conn.execute(insert(table), [dict(row._mapping) for row in rows])
            copied += len(rows)
            if progress is not None:
                progress(table.name, copied, total)
        report.counts[table.name] = copied
    await _advance_sequences(target, order)
    for table in order:
        have, want = await count_rows(target, table), await count_rows(source, table)
        if have != want:
            raise StateError(
                f"table {table.name}: {want} rows in the source, {have} in the target after the copy",
                hint="Did the source change meanwhile? Stop its servers and workers; run again with --force.",
            )
        report.counts[table.name] = have
    return report


async def _advance_sequences(target: Database, order: list[Table]) -> None:
    """PostgreSQL: an id column's sequence continues after the highest id copied (ids were
    inserted explicitly, which does not move it)."""
    if target.is_sqlite:
        return
    async with target.engine.begin() as conn:
        for table in order:
            for column in table.primary_key.columns:
                if not (column.autoincrement is True and isinstance(column.type, Integer)):
                    continue
                seq = (
                    await conn.execute(
                        text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
                    )
                ).scalar_one()
                if seq is None:
                    continue
                top = (await conn.execute(select(func.max(column)))).scalar_one()
                if top is not None:
                    await conn.execute(text("SELECT setval(:s, :v)"), {"s": seq, "v": int(top)})


def describe(report: MigrationReport) -> list[str]:
    return [f"{name}: {n}" for name, n in report.counts.items() if n] or ["(no rows)"]

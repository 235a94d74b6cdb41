"""Alembic environment, driven from code (`Database.upgrade`) rather than from an ini file.

The caller hands over an open synchronous connection (via `AsyncConnection.run_sync`), so the
same path serves aiosqlite and asyncpg without alembic creating an engine of its own.
"""

from __future__ import annotations

from alembic import context

from crm_mcp.state.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("crm-mcp migrations run through Database.upgrade(), which passes a connection")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()

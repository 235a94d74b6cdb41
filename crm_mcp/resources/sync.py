"""Resources: `sync://status`, `sync://dead-letter` and the template `sync://dead-letter/{entry_id}`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from crm_mcp.scope import current_principal

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime


def register(server: MCPServer[Any], rt: Runtime) -> None:
    from crm_mcp.views import current_status, dead_letter_entry, dead_letter_page

    @server.resource(
        "sync://status",
        name="sync_status",
        title="Sync status",
        description="Totals, success rate, backlog, dead-letter size, recent failures, health verdict.",
        mime_type="application/json",
    )
    async def sync_status() -> str:
        return (await current_status(rt, max_age_s=1.0)).model_dump_json(indent=2)

    @server.resource(
        "sync://dead-letter",
        name="dead_letter_queue",
        title="Dead-letter queue",
        description="Operations that failed for good (newest 100), with their final error.",
        mime_type="application/json",
    )
    async def dead_letters() -> str:
        page = await dead_letter_page(rt, connection=None, limit=100, offset=0, with_history=False)
        return page.model_dump_json(indent=2)

    @server.resource(
        "sync://dead-letter/{entry_id}",
        name="dead_letter_entry",
        title="Dead-letter entry",
        description="One failed operation: payload, full error history, and how to retry it.",
        mime_type="application/json",
    )
    async def dead_letter(entry_id: str) -> str:
        from crm_mcp.state.models import SyncOperation
        from crm_mcp.state.outbox import get_dead_letter

        db = await rt.database()
        async with db.sessions() as session:
            row = await get_dead_letter(session, entry_id)
            if row is None or not current_principal().may_use(row.connection):
                raise ResourceNotFoundError(f"No dead-letter entry {entry_id!r}; list sync://dead-letter.")
            op = await session.get(SyncOperation, row.operation_id)
            entry = dead_letter_entry(row, op).model_dump(mode="json")
            entry["payload"] = op.payload if op else None
            entry["how_to_retry"] = f"Call retry_failed_sync with operation_id={row.operation_id!r}."
        return json.dumps(entry, indent=2)


def register_schema(server: MCPServer[Any], rt: Runtime) -> None:
    """`crm://{connection}/schema`: a connection's contact and appointment fields in one shape."""
    from crm_mcp.errors import CRMError

    @server.resource(
        "crm://{connection}/schema",
        name="crm_schema",
        title="CRM schema",
        description="Contact (standard + custom) and appointment fields of a connection, neutral shape.",
        mime_type="application/json",
    )
    async def crm_schema(connection: str) -> str:
        from crm_mcp.views import crm_fields

        try:
            rt.connection(connection)
            out = {}
            for obj in ("contact", "appointment"):
                _name, fields = await crm_fields(rt, connection, obj)
                out[obj] = [f.model_dump(mode="json", exclude_none=True) for f in fields]
        except CRMError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        return json.dumps({"connection": connection, **out}, indent=2)

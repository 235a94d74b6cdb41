"""The template `sync://operations/{id}`: one outbox operation, subscribable until it lands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ResourceNotFoundError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime


def register(server: MCPServer[Any], rt: Runtime) -> None:
    from crm_mcp.views import operation_view

    @server.resource(
        "sync://operations/{id}",
        name="sync_operation",
        title="Sync operation",
        description=(
            "One outbox operation (the sync_operation_id a write tool returned): status, every "
            "attempt with its error, progress and result, and the CRM ids it created. Subscribe "
            "to it to be told when it is delivered or fails."
        ),
        mime_type="application/json",
    )
    async def sync_operation(id: str) -> str:  # the template's variable name
        view = await operation_view(rt, id)
        if view is None:
            raise ResourceNotFoundError(
                f"No sync operation {id!r}. Write tools return its id as sync_operation_id; "
                'get_sync_status with detail="full" lists recent failures.'
            )
        return view.model_dump_json(indent=2)

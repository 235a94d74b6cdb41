"""`completion/complete`: suggest connection names, dead-letter entry ids and operation ids.

Clients ask while the user types a resource-template or prompt argument; the answer is a prefix
match, at most 100 values (the protocol's cap), newest ids first. An argument we know nothing
about gets an empty list, never an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from crm_mcp.scope import connection_filter

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

MAX_VALUES = 100

Lookup = Callable[["Runtime", str], Awaitable[list[str]]]


async def connection_names(rt: Runtime, prefix: str) -> list[str]:
    return sorted(c.name for c in rt.connections() if c.name.startswith(prefix))


async def operation_ids(rt: Runtime, prefix: str) -> list[str]:
    from crm_mcp.state.operation_log import operation_ids as query

    db = await rt.database()
    async with db.sessions() as session:
        return await query(session, prefix, limit=MAX_VALUES + 1, connections=connection_filter())


async def dead_letter_ids(rt: Runtime, prefix: str) -> list[str]:
    from crm_mcp.state.operation_log import dead_letter_ids as query

    db = await rt.database()
    async with db.sessions() as session:
        return await query(session, prefix, limit=MAX_VALUES + 1, connections=connection_filter())


# (template, argument) -> lookup; a `connection` argument anywhere means a connection name
TEMPLATE_ARGUMENTS: dict[tuple[str, str], Lookup] = {
    ("sync://operations/{id}", "id"): operation_ids,
    ("sync://dead-letter/{entry_id}", "entry_id"): dead_letter_ids,
}


def lookup_for(ref: ResourceTemplateReference | PromptReference, argument: str) -> Lookup | None:
    """Which look-up completes `argument` of `ref`, if any."""
    if argument == "connection":
        return connection_names
    if isinstance(ref, ResourceTemplateReference):
        return TEMPLATE_ARGUMENTS.get((ref.uri, argument))
    return None


def register(server: MCPServer[Any], rt: Runtime) -> None:
    """Install the completion handler (this also declares the `completions` capability)."""

    @server.completion()
    async def complete(
        ref: ResourceTemplateReference | PromptReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        lookup = lookup_for(ref, argument.name)
        values = await lookup(rt, argument.value) if lookup is not None else []
        more = len(values) > MAX_VALUES
        return Completion(values=values[:MAX_VALUES], total=None if more else len(values), has_more=more)

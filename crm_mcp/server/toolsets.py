"""Toolsets and read-only mode: which tools a server registers.

Agents choke on many tools, and an operator may not want an agent to write at all. Every tool
belongs to exactly one toolset (a test checks it against what the server registers);
`serve --toolsets contacts,appointments` (or `CRM_MCP_TOOLSETS`) registers only those toolsets'
tools, and `serve --read-only` (or `CRM_MCP_READ_ONLY=true`) only the tools annotated
`readOnlyHint: true`. Resources and prompts are not filtered: resources only read, and a prompt
names tools the client may simply not have.
"""

from __future__ import annotations

from collections.abc import Iterable

from crm_mcp.errors import ConfigurationError

TOOLSETS: dict[str, tuple[str, ...]] = {
    "contacts": ("search_contacts", "get_contact", "upsert_contact", "add_contact_note"),
    "leads": ("search_leads", "qualify_lead"),
    "appointments": (
        "create_appointment",
        "update_appointment_status",
        "list_appointments",
        "find_free_slots",
    ),
    "sync": (
        "get_sync_status",
        "list_dead_letters",
        "retry_failed_sync",
        "validate_sync",
        "sync_records",
        "sync_call_logs",
    ),
    "diagnostics": ("check_integration_health", "analyze_crm_schema", "generate_connector_config"),
}
TOOLSET_OF: dict[str, str] = {tool: name for name, tools in TOOLSETS.items() for tool in tools}


def check_toolsets(names: Iterable[str]) -> frozenset[str] | None:
    """The tools the named toolsets hold (None: no names given, every tool).

    Raises:
        ConfigurationError: a name that is not a toolset (the message lists the valid ones).
    """
    wanted = [n.strip().lower() for n in names if n.strip()]
    if not wanted:
        return None
    unknown = [n for n in wanted if n not in TOOLSETS]
    if unknown:
        raise ConfigurationError(
            f"unknown toolset {', '.join(map(repr, unknown))}: valid toolsets are {', '.join(TOOLSETS)} "
            "(--toolsets / CRM_MCP_TOOLSETS, comma-separated)."
        )
    return frozenset(tool for n in wanted for tool in TOOLSETS[n])


class ToolFilter:
    """Decides, at registration, whether a tool is part of this server."""

    def __init__(self, *, read_only: bool = False, toolsets: Iterable[str] = ()) -> None:
        self.read_only = read_only
        self.allowed = check_toolsets(toolsets)

    @property
    def active(self) -> bool:
        return self.read_only or self.allowed is not None

    def admits(self, name: str, read_only_hint: bool | None) -> bool:
        if self.read_only and read_only_hint is not True:
            return False
        return self.allowed is None or name in self.allowed

"""Prompts: short workflows that use the tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer


def register(server: MCPServer[Any]) -> None:
    @server.prompt(name="triage_failed_syncs", title="Triage failed syncs")
    def triage_failed_syncs() -> str:
        """Find what failed to sync, why, and fix or retry it."""
        return (
            '1. Call get_sync_status with detail="full"; read the verdict, reasons and recent failures.\n'
            "2. Call list_dead_letters; group the entries by reason.\n"
            "3. For each group say whether the cause is fixed on our side (credentials, bad input) or "
            "was temporary (rate limit, outage). Do not retry input errors unchanged.\n"
            "4. For temporary causes, call retry_failed_sync with dry_run=true, then without it.\n"
            "5. Report what was retried, what needs a human, and the status afterwards."
        )

    @server.prompt(name="book_appointment", title="Book an appointment")
    def book_appointment(
        contact: Annotated[str, Field(description="Who: name plus email or phone.")],
        when: Annotated[
            str, Field(description="Start time with its time zone, e.g. 2030-01-15 15:00 New York.")
        ],
    ) -> str:
        """Book an appointment for a contact at a time, checking the calendar first."""
        return (
            f"Book an appointment for {contact} at {when}.\n"
            "Use create_appointment with the contact's first name and email or phone, the start time "
            "with its time zone, and an idempotency_key you keep, so a retry never books twice. "
            "Then report the appointment id and sync_operation_id, and check get_sync_status if the "
            "user wants to know it reached the CRM."
        )

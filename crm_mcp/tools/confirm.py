"""Confirmation for destructive and bulk actions: ask the user through MCP elicitation, or insist
on `confirm=true` from clients that cannot ask.

A tool that needs it takes `confirm: ConfirmArg = False` and a parameter
`confirmation: Annotated[ElicitationResult[Confirmation], Resolve(its_resolver)]`. The resolver
(module level, taking tool arguments by name and the `Context`) returns `ask(ctx, confirm, question)`:
`question=None` when this call needs no confirmation (e.g. an action other than cancel). The SDK's
resolver form (`Resolve` / `Elicit`) asks on both protocol eras: a standalone `elicitation/create`
request on older revisions, an `InputRequiredResult` round on newer ones. The tool body then
calls `confirmed(confirmation, ...)` before changing anything.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

ConfirmArg = Annotated[bool, Field(description="Already confirmed by the user.")]

Verdict = Literal["not_needed", "confirmed", "unsupported"]
INPUT_REQUIRED_VERSION = "2026-07-28"  # from this revision on, a tool call asks in its result


class Confirmation(BaseModel):
    """What the user is asked: one yes/no box."""

    confirm: bool = Field(title="Go ahead", description="Tick to go ahead; leave unticked to stop.")


def can_elicit(ctx: Context) -> bool:
    """Whether the client declared form elicitation (a bare `elicitation: {}` counts as form)."""
    try:
        capabilities = ctx.client_capabilities
    except Exception:  # no request (a direct call_tool in-process): nobody to ask
        return False
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, INPUT_REQUIRED_VERSION):
        return True  # asked inside the tool result (InputRequiredResult): no back-channel needed
    # older revisions ask with a server-to-client request: the channel must be able to carry one
    return bool(getattr(ctx.request_context.session, "can_send_request", True))


def ask(ctx: Context, confirm: bool, question: str | None) -> Elicit[Confirmation] | Verdict:
    """A resolver's answer: no question needed, already confirmed, cannot ask, or ask `question`."""
    if question is None:
        return "not_needed"
    if confirm:
        return "confirmed"
    if not can_elicit(ctx):
        return "unsupported"
    return Elicit(question, Confirmation)


def verdict(outcome: ElicitationResult[Any]) -> Literal["go", "declined", "unsupported"]:
    """What the tool may do: go ahead, stop (the user said no), or stop (nobody could be asked)."""
    if not isinstance(outcome, AcceptedElicitation):
        return "declined"
    data = outcome.data
    if data in ("not_needed", "confirmed"):
        return "go"
    if data == "unsupported":
        return "unsupported"
    return "go" if isinstance(data, Confirmation) and data.confirm else "declined"


def confirmed(outcome: ElicitationResult[Any], tool: str, what: str) -> None:
    """Return when the tool may go ahead.

    Raises:
        ToolError: the user declined, or the client cannot ask and `confirm=true` was not given;
            nothing was changed in either case.
    """
    match verdict(outcome):
        case "go":
            return
        case "declined":
            raise ToolError(
                f"Not done: the user declined to {what}. Nothing was changed; do not call "
                f"{tool} again for this unless the user asks."
            )
        case _:
            raise ToolError(
                f"Not done: to {what} needs the user's confirmation, and this client cannot ask for it. "
                f"Nothing was changed. Ask the user; if they agree, call {tool} again with confirm=true."
            )

"""Outbox handlers for the agent's toolbox: contact upserts, notes, and applying a lead score.

Same contract as `crm_mcp.sync.actions`: every step is safe to repeat by itself and checkpoints
its result, so a retried delivery resumes where it stopped; creates without a natural key (notes,
tasks) carry a `crm-mcp:<id>:<purpose>` marker and are looked up by it before being created
again when an earlier attempt may have written (`ctx.read_before_create`; these operations are
queued without `fresh`, so they always look). Contact upserts are natural-key writes
(email/phone), so repeating them is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from crm_mcp.connectors.base import Contact, Contacts, Notes, Tasks, require
from crm_mcp.state import refs
from crm_mcp.state.db import Database
from crm_mcp.state.models import Lead, SyncOperation
from crm_mcp.sync.actions import (
    ConnectorLookup,
    Handler,
    add_tags,
    find_or_create_note,
    find_or_create_task,
    marker,
)
from crm_mcp.sync.commands import ContactNote, ContactUpsert, LeadApply


def build_lead_handlers(
    db: Database, connector_for: ConnectorLookup, now: Callable[[], datetime]
) -> dict[str, Handler]:
    """Handlers for `contact.upsert`, `contact.note` and `lead.apply`."""

    async def remember_contact(connection: str, lead_id: str | None, contact_id: str) -> None:
        if not lead_id:
            return
        async with db.begin_write() as session:
            await refs.link(session, connection, "lead", lead_id, "contact", contact_id, now(), replace=True)
            lead = await session.get(Lead, lead_id)
            if lead is not None and lead.status == "new":
                lead.status = "synced"

    async def contact_upsert(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        cmd = ContactUpsert.of(op)
        c = require(connector_for(op.connection), Contacts)
        saved, created = await c.upsert_contact(Contact(**cmd.contact.model_dump()))
        assert saved.id
        await remember_contact(op.connection, cmd.lead_id, saved.id)
        return {"contact_id": saved.id, "created": created}

    async def contact_note(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        cmd = ContactNote.of(op)
        c = require(connector_for(op.connection), Notes)
        note_id = await find_or_create_note(
            c, cmd.contact_id, marker(op.id, "note"), cmd.body, look_first=ctx.read_before_create
        )
        return {"contact_id": cmd.contact_id, "note_id": note_id}

    async def lead_apply(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        """Score custom field (when the CRM has one), band tags, and the follow-up task for hot leads."""
        cmd = LeadApply.of(op)
        c = connector_for(op.connection)
        done: dict[str, Any] = dict(ctx.progress or {})
        if "contact_id" not in done:
            contact_id = cmd.contact_id
            if not contact_id:
                assert cmd.contact is not None
                saved, _ = await require(c, Contacts).upsert_contact(Contact(**cmd.contact.model_dump()))
                assert saved.id
                contact_id = saved.id
                await remember_contact(op.connection, cmd.lead_id, contact_id)
            done["contact_id"] = contact_id
            await ctx.checkpoint(done)
        contact_id = done["contact_id"]
        if "score_field" not in done:
            await require(c, Contacts).set_contact_fields(contact_id, {cmd.score_field: cmd.score})
            done["score_field"] = cmd.score_field
            await ctx.checkpoint(done)
        if cmd.tags and "tags" not in done:
            done["tags"] = await add_tags(c, contact_id, list(cmd.tags))
            await ctx.checkpoint(done)
        if cmd.task and "task_id" not in done:
            due = now() + timedelta(hours=cmd.task.due_hours)
            done["task_id"] = await find_or_create_task(
                require(c, Tasks),
                contact_id,
                marker(op.id, "follow-up"),
                cmd.task.title,
                cmd.task.body,
                due,
                look_first=ctx.read_before_create,
            )
            await ctx.checkpoint(done)
        return done

    return {"contact.upsert": contact_upsert, "contact.note": contact_note, "lead.apply": lead_apply}

"""Outbox handlers for the agent's toolbox: contact upserts, notes, and applying a lead score.

Same contract as `crm_mcp.sync.actions`: every step is safe to repeat by itself and checkpoints
its result, so a retried delivery resumes where it stopped; creates without a natural key (notes,
tasks) carry a `crm-mcp:<id>:<purpose>` marker and are looked up by it before being created
again. Contact upserts are natural-key writes (email/phone), so repeating them is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from crm_mcp.connectors.base import Contact, Contacts, Notes, Tasks, require
from crm_mcp.state.db import Database
from crm_mcp.state.models import ExternalRef, Lead, SyncOperation
from crm_mcp.sync.actions import (
    ConnectorLookup,
    Handler,
    add_tags,
    find_or_create_note,
    find_or_create_task,
    marker,
)


def contact_from_payload(c: Mapping[str, Any]) -> Contact:
    return Contact(
        first_name=c.get("first_name"),
        last_name=c.get("last_name"),
        email=c.get("email"),
        phone=c.get("phone"),
        company_name=c.get("company_name"),
        source=c.get("source"),
        tags=list(c.get("tags") or []),
        custom_fields=dict(c.get("custom_fields") or {}),
    )


def build_lead_handlers(
    db: Database, connector_for: ConnectorLookup, now: Callable[[], datetime]
) -> dict[str, Handler]:
    """Handlers for `contact.upsert`, `contact.note` and `lead.apply`."""

    async def remember_contact(connection: str, lead_id: str | None, contact_id: str) -> None:
        if not lead_id:
            return
        async with db.begin_write() as session:
            found = (
                await session.execute(
                    select(ExternalRef).where(
                        ExternalRef.connection == connection,
                        ExternalRef.local_type == "lead",
                        ExternalRef.local_id == lead_id,
                        ExternalRef.remote_type == "contact",
                    )
                )
            ).scalar_one_or_none()
            if found is None:
                session.add(
                    ExternalRef(
                        connection=connection,
                        local_type="lead",
                        local_id=lead_id,
                        remote_type="contact",
                        remote_id=contact_id,
                        created_at=now(),
                    )
                )
            else:
                found.remote_id = contact_id
            lead = await session.get(Lead, lead_id)
            if lead is not None and lead.status == "new":
                lead.status = "synced"

    async def contact_upsert(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        p = op.payload
        c = require(connector_for(op.connection), Contacts)
        saved, created = await c.upsert_contact(contact_from_payload(p["contact"]))
        assert saved.id
        await remember_contact(op.connection, p.get("lead_id"), saved.id)
        return {"contact_id": saved.id, "created": created}

    async def contact_note(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        p = op.payload
        c = require(connector_for(op.connection), Notes)
        note_id = await find_or_create_note(c, p["contact_id"], marker(op.id, "note"), p["body"])
        return {"contact_id": p["contact_id"], "note_id": note_id}

    async def lead_apply(op: SyncOperation, ctx: Any) -> dict[str, Any]:
        """Score custom field (when the CRM has one), band tags, and the follow-up task for hot leads."""
        p = op.payload
        c = connector_for(op.connection)
        done: dict[str, Any] = dict(ctx.progress or {})
        if "contact_id" not in done:
            contact_id = p.get("contact_id")
            if not contact_id:
                saved, _ = await require(c, Contacts).upsert_contact(contact_from_payload(p["contact"]))
                assert saved.id
                contact_id = saved.id
                await remember_contact(op.connection, p.get("lead_id"), contact_id)
            done["contact_id"] = contact_id
            await ctx.checkpoint(done)
        contact_id = done["contact_id"]
        if "score_field" not in done:
            field = p.get("score_field") or "lead_score"
            await require(c, Contacts).set_contact_fields(contact_id, {field: p["score"]})
            done["score_field"] = field
            await ctx.checkpoint(done)
        if p.get("tags") and "tags" not in done:
            done["tags"] = await add_tags(c, contact_id, list(p["tags"]))
            await ctx.checkpoint(done)
        task = p.get("task")
        if task and "task_id" not in done:
            due = now() + timedelta(hours=float(task.get("due_hours", 4)))
            done["task_id"] = await find_or_create_task(
                require(c, Tasks), contact_id, marker(op.id, "follow-up"), task["title"], task["body"], due
            )
            await ctx.checkpoint(done)
        return done

    return {"contact.upsert": contact_upsert, "contact.note": contact_note, "lead.apply": lead_apply}

"""The custom-field list is metadata: read once per connection, never per operation; read again
on a schedule, or when the CRM refuses a write because of a field."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crm_mcp.connectors.base import Contact, FieldSchema
from crm_mcp.connectors.fields import FieldResolver
from crm_mcp.errors import InvalidRequestError
from crm_mcp.providers.gohighlevel.connector import GoHighLevelConnector
from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, SANDBOX_TOKEN

pytestmark = pytest.mark.anyio

LOGICAL = {"appointment_status": "contact.appointment_status"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FieldList:
    """A CRM's custom-field list that counts its reads; `field_id` may change (deleted, re-added)."""

    def __init__(self) -> None:
        self.reads = 0
        self.field_id = "f1"

    async def __call__(self) -> list[FieldSchema]:
        self.reads += 1
        await asyncio.sleep(0)  # let concurrent callers pile up behind the first read
        return [FieldSchema(id=self.field_id, key="contact.appointment_status", label="Status", type="TEXT")]


def refused(exc: Exception) -> bool:
    return isinstance(exc, InvalidRequestError) and "customFields" in exc.message


async def test_concurrent_first_uses_share_one_read() -> None:
    load = FieldList()
    resolver = FieldResolver(LOGICAL, load, clock=Clock())
    got = await asyncio.gather(*(resolver.resolve({"appointment_status": "x"}) for _ in range(8)))
    assert got == [{"f1": "x"}] * 8 and load.reads == 1 == resolver.loads


async def test_the_list_is_read_again_on_a_schedule_not_per_use() -> None:
    load, clock = FieldList(), Clock()
    resolver = FieldResolver(LOGICAL, load, refresh_s=600, clock=clock)
    for _ in range(20):
        await resolver.resolve({"appointment_status": "x"})
    assert load.reads == 1
    clock.now += 601
    load.field_id = "f2"
    assert await resolver.resolve({"appointment_status": "x"}) == {"f2": "x"}
    assert load.reads == 2


async def test_a_refused_field_reads_the_list_again_and_sends_once_more() -> None:
    load, clock = FieldList(), Clock()
    resolver = FieldResolver(LOGICAL, load, clock=clock)
    await resolver.resolve({"appointment_status": "x"})
    load.field_id = "f2"  # re-created in the CRM under a new id since we read the list
    clock.now += 60
    sent: list[dict[str, Any]] = []

    async def send(values: dict[str, Any]) -> str:
        sent.append(values)
        if "f2" not in values:
            raise InvalidRequestError("customFields.0 custom field 'f1' not found", status=422)
        return "ok"

    assert await resolver.write({"appointment_status": "x"}, send, field_error=refused) == "ok"
    assert sent == [{"f1": "x"}, {"f2": "x"}] and load.reads == 2


async def test_a_refusal_right_after_a_read_is_not_a_stale_list() -> None:
    load, clock = FieldList(), Clock()
    resolver = FieldResolver(LOGICAL, load, min_reload_s=10, clock=clock)

    async def send(values: dict[str, Any]) -> None:
        raise InvalidRequestError("customFields.0 'x' is not an option of Status", status=422)

    with pytest.raises(InvalidRequestError):
        await resolver.write({"appointment_status": "x"}, send, field_error=refused)
    assert load.reads == 1  # read 0 s ago: reading it again cannot help


async def test_ghl_recovers_when_a_field_was_recreated_after_the_list_was_read(ghl_sandbox: Any) -> None:
    sim, server = ghl_sandbox
    clock = Clock()
    conn = GoHighLevelConnector(
        "fields", token=SANDBOX_TOKEN, location_id=SANDBOX_LOCATION_ID, base_url=server.url, clock=clock
    )
    try:
        await conn.upsert_contact(
            Contact(email="a@example.com", custom_fields={"appointment_status": "confirmed"})
        )
        field = next(f for f in sim.api.custom_fields if f["fieldKey"] == "contact.appointment_status")
        field["id"] = "SbxCfRecreated000001"  # deleted and re-created in GoHighLevel's UI
        clock.now += 60
        saved, _ = await conn.upsert_contact(
            Contact(email="b@example.com", custom_fields={"appointment_status": "confirmed"})
        )
        assert saved.custom_fields == {"SbxCfRecreated000001": "Confirmed"}
        routes = sim.stats["by_route"]
        assert routes["GET /locations/{locationId}/customFields"] == 2
        assert routes["POST /contacts/upsert"] == 3  # the refused one and its one re-send
        assert sim.stats["by_status"]["422"] == 1
    finally:
        await conn.aclose()

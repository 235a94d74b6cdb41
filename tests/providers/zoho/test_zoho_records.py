"""Zoho people over real HTTP against the simulator: per-record statuses, upsert by
duplicate_check_fields, 100 records a call, 204 as "no records", page_token past 2,000 records,
search by criteria / email / phone / word across Leads and Contacts."""

from __future__ import annotations

from typing import Any

import pytest

from crm_mcp.connectors.base import Contact
from crm_mcp.errors import InvalidRequestError, NotFoundError
from crm_mcp.providers.zoho.connector import ZohoConnector
from crm_mcp.providers.zoho.sandbox import ZohoSandbox

pytestmark = pytest.mark.anyio


def seed(sim: ZohoSandbox, module: str, record: dict[str, Any]) -> str:
    with sim.lock:
        outcome = sim.store.insert(module, record, 0)
    assert outcome.ok, outcome
    return str(outcome.details["id"])


def calls(sim: ZohoSandbox, route: str) -> int:
    return sim.stats[route]


async def test_a_batch_maps_each_records_status_from_a_207(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    old = seed(sim, "Leads", {"Last_Name": "Old", "First_Name": "Olga", "Email": "old@example.com"})
    items = await zoho.upsert_contacts(
        [
            Contact(email="new@example.com", first_name="Nina", last_name="New"),
            Contact(email="OLD@example.com", phone="+15550100009"),
            Contact(email="not-an-email", last_name="Bad"),
            Contact(first_name="Nobody"),
        ]
    )
    assert [(i.index, i.created, i.error is None) for i in items] == [
        (0, True, True),
        (1, False, True),
        (2, False, False),
        (3, False, False),
    ]
    assert items[1].contact is not None and items[1].contact.id == old
    assert items[2].error and "INVALID_DATA on Email" in items[2].error
    assert items[3].error and "email or a phone" in items[3].error
    assert calls(sim, "POST /Leads/upsert") == 1  # one call for the three that could go
    kept = sim.store.tables["Leads"][old]
    assert (kept["Last_Name"], kept["First_Name"], kept["Phone"]) == ("Old", "Olga", "+15550100009")


async def test_a_new_lead_without_a_last_name_gets_one_but_an_update_never_overwrites_it(
    zoho: ZohoConnector, sim: ZohoSandbox
) -> None:
    existing = seed(sim, "Leads", {"Last_Name": "Lovelace", "Email": "ada@example.com"})
    saved, created = await zoho.upsert_contact(Contact(email="ada@example.com", first_name="Ada"))
    assert (saved.id, created) == (existing, False)
    assert sim.store.tables["Leads"][existing]["Last_Name"] == "Lovelace"
    assert calls(sim, "POST /Leads/upsert") == 1
    named, created = await zoho.upsert_contact(Contact(phone="+15550100002", name="Grace Hopper"))
    assert created and named.id and sim.store.tables["Leads"][named.id]["Last_Name"] == "Hopper"
    assert calls(sim, "POST /Leads/upsert") == 2  # a name splits into First_Name / Last_Name
    fresh, created = await zoho.upsert_contact(Contact(phone="+15550100001", first_name="Grace"))
    assert created and fresh.id
    assert sim.store.tables["Leads"][fresh.id]["Last_Name"] == "+15550100001"
    # the first try is refused per record (MANDATORY_NOT_FOUND Last_Name), the second has a fallback
    assert calls(sim, "POST /Leads/upsert") == 4


async def test_batches_go_100_records_a_call(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    people = [Contact(email=f"p{i}@example.com", last_name=f"P{i}") for i in range(230)]
    items = await zoho.upsert_contacts(people)
    assert all(i.created and i.error is None for i in items) and len(items) == 230
    assert calls(sim, "POST /Leads/upsert") == 3
    assert len(sim.store.tables["Leads"]) == 230
    again = await zoho.upsert_contacts(people[:100])  # the same people: updates, no second record
    assert not any(i.created for i in again) and len(sim.store.tables["Leads"]) == 230


async def test_an_update_by_id_and_a_missing_id(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    rid = seed(sim, "Contacts", {"Last_Name": "Roe", "Email": "roe@example.com"})
    saved, created = await zoho.upsert_contact(Contact(id=f"Contacts:{rid}", first_name="Rita"))
    assert (saved.id, created) == (f"Contacts:{rid}", False)
    assert sim.store.tables["Contacts"][rid]["First_Name"] == "Rita"
    with pytest.raises(NotFoundError):
        await zoho.upsert_contact(Contact(id="Contacts:123", first_name="Nope"))
    with pytest.raises(NotFoundError):  # Zoho answers 204 for a record it does not have
        await zoho.get_contact("Contacts:123")


async def test_204_is_no_records_not_an_error(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    page = await zoho.search_contacts(None, 10, None)
    assert page.contacts == [] and page.next_cursor == "Contacts|p|1|10"
    last = await zoho.search_contacts(None, 10, page.next_cursor)
    assert last.contacts == [] and last.next_cursor is None
    assert await zoho.get_contacts_by_email(["nobody@example.com"]) == {}
    assert await zoho.find_contacts_by_phone("+15550100000") == []
    assert await zoho.list_notes("4876876000000000001") == []


async def test_page_token_is_used_past_2000_records(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    with sim.lock:
        for i in range(2050):
            sim.store.insert("Leads", {"Last_Name": f"L{i}"}, 0)
    seen: list[str] = []
    cursors: list[str] = []
    cursor: str | None = None
    while True:
        page = await zoho.search_contacts(None, 200, cursor)
        seen += [str(c.id) for c in page.contacts]
        cursor = page.next_cursor
        if cursor is None or cursor.startswith("Contacts"):
            break
        cursors.append(cursor)
    assert len(seen) == len(set(seen)) == 2050
    assert [c.split("|")[1] for c in cursors] == ["p"] * 9 + ["t"]  # pages 2..10, then a token
    with pytest.raises(InvalidRequestError) as refused:  # what `page` alone would have met
        await zoho.search_contacts(None, 200, "Leads|p|11|200")
    assert "DISCRETE_PAGINATION_LIMIT_EXCEEDED" in refused.value.message


async def test_search_by_criteria_email_phone_and_word_covers_both_modules(
    zoho: ZohoConnector, sim: ZohoSandbox
) -> None:
    lead = seed(sim, "Leads", {"Last_Name": "Burns", "First_Name": "Mo", "Email": "mo@example.com"})
    contact = seed(sim, "Contacts", {"Last_Name": "Burns", "First_Name": "Monty", "Phone": "(555) 010-0001"})

    async def ids(query: str) -> list[str]:
        out: list[str] = []
        cursor: str | None = None
        for _ in range(4):
            page = await zoho.search_contacts(query, 10, cursor)
            out += [str(c.id) for c in page.contacts]
            if (cursor := page.next_cursor) is None:
                break
        return out

    assert await ids("(Last_Name:equals:Burns)") == [lead, f"Contacts:{contact}"]
    assert await ids("((Last_Name:equals:Burns)and(First_Name:starts_with:Mon))") == [f"Contacts:{contact}"]
    assert await ids("mo@example.com") == [lead]
    assert await ids("555-010-0001") == [f"Contacts:{contact}"]
    assert await ids("monty") == [f"Contacts:{contact}"]
    got = await zoho.get_contact(f"Contacts:{contact}")
    assert (got.first_name, got.phone) == ("Monty", "(555) 010-0001")


async def test_emails_are_looked_up_ten_a_call_leads_then_contacts(
    zoho: ZohoConnector, sim: ZohoSandbox
) -> None:
    for i in range(12):
        seed(sim, "Leads", {"Last_Name": f"L{i}", "Email": f"l{i}@example.com"})
    contact = seed(sim, "Contacts", {"Last_Name": "C", "Email": "c@example.com"})
    wanted = [f"L{i}@example.com" for i in range(12)] + ["c@example.com", "none@example.com"]
    found = await zoho.get_contacts_by_email(wanted)
    assert set(found) == {f"l{i}@example.com" for i in range(12)} | {"c@example.com"}
    assert found["c@example.com"].id == f"Contacts:{contact}"
    assert calls(sim, "GET /Leads/search") == 2 and calls(sim, "GET /Contacts/search") == 1


async def test_phone_lookup_tries_the_orgs_formats(zoho: ZohoConnector, sim: ZohoSandbox) -> None:
    lead = seed(sim, "Leads", {"Last_Name": "A", "Phone": "+1 555 010 0001"})
    national = seed(sim, "Contacts", {"Last_Name": "B", "Mobile": "(555) 010-0001"})
    found = await zoho.find_contacts_by_phone("+15550100001")
    assert [c.id for c in found] == [lead, f"Contacts:{national}"]
    # Leads matched at the first format; Contacts only at the national one
    assert calls(sim, "GET /Leads/search") == 1 and calls(sim, "GET /Contacts/search") == 2
    assert sim.stats["PUT /Leads"] + sim.stats["POST /Leads"] == 0  # read-only

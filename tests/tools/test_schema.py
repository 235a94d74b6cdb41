"""analyze_crm_schema through MCP against the sandbox, plus the pure mapping-confidence functions."""

from __future__ import annotations

from typing import Any

import pytest

from crm_mcp.tools.schema import SchemaField, confidence, propose_mapping, tokens, type_compatibility
from tests.tools.test_crm_queries import error_text, toolbox

pytestmark = pytest.mark.anyio


def f(key: str, type_: str = "TEXT", label: str | None = None) -> SchemaField:
    return SchemaField(key=key, label=label or key, type=type_, custom=False)


def test_tokens_normalise_case_styles_and_synonyms() -> None:
    assert tokens("contact.firstName") == tokens("first_name") == tokens("First Name") == ["first", "name"]
    assert tokens("mobile") == tokens("phone")
    assert tokens("contact.postal_code") == tokens("zip code")


def test_confidence_rewards_names_and_penalises_types() -> None:
    same, why = confidence(f("firstName"), f("first_name"))
    assert same == 1.0 and "same name" in why
    budget, why = confidence(f("contact.budget", "MONETORY", "Budget"), f("budget", "TEXT"))
    assert 0.7 <= budget < 1.0 and "convertible" in why
    clash, _ = confidence(f("start", "DATE"), f("start", "CHECKBOX"))
    assert clash < 0.5
    assert type_compatibility("NUMERICAL", "MONETORY")[0] == 1.0
    assert confidence(f("email"), f("city"))[0] < 0.5


def test_propose_mapping_is_one_to_one_and_explains_leftovers() -> None:
    src = [f("firstName"), f("email", "EMAIL"), f("website"), f("name")]
    dst = [f("first_name"), f("email", "EMAIL"), f("last_name")]
    maps, unmapped = propose_mapping(src, dst)
    pairs = {(m.source, m.target) for m in maps}
    assert ("firstName", "first_name") in pairs and ("email", "email") in pairs
    assert len({m.target for m in maps}) == len(maps)
    left = {u.key: u.reason for u in unmapped if u.side == "source"}
    assert "website" in left and "no match" in left["website"]
    assert maps == propose_mapping(src, dst)[0]  # deterministic


async def test_schema_lists_standard_and_custom_fields(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok("analyze_crm_schema", {})
        keys = {x["key"]: x for x in r["fields"]}
        assert keys["email"]["custom"] is False and keys["email"]["type"] == "EMAIL"
        status = keys["contact.appointment_status"]
        assert status["custom"] is True and "Confirmed" in status["options"]
        assert "contact.deal_source" not in keys  # opportunity fields are not contact fields
        assert r["field_count"] == len(r["fields"]) and not r["truncated"] and r["mappings"] == []
        appt = await h.ok("analyze_crm_schema", {"object": "appointment"})
        assert {"startTime", "calendarId", "appointmentStatus"} <= {x["key"] for x in appt["fields"]}


async def test_schema_maps_to_the_local_model(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok("analyze_crm_schema", {"compare_to": "local"})
        got = {m["source"]: (m["target"], m["confidence"]) for m in r["mappings"]}
        assert got["firstName"] == ("first_name", 1.0)
        assert got["email"][0] == "email" and got["phone"][0] == "phone"
        assert got["contact.budget"][0] == "budget" and got["contact.budget"][1] < 1.0
        assert all(0 <= m["confidence"] <= 1 and m["reason"] for m in r["mappings"])
        assert any(u["key"] == "dnd" for u in r["unmapped"])
        appt = await h.ok("analyze_crm_schema", {"object": "appointment", "compare_to": "local"})
        amap = {m["source"]: m["target"] for m in appt["mappings"]}
        assert amap["startTime"] == "start_time" and amap["calendarId"] == "calendar_id"
        self_map = await h.ok("analyze_crm_schema", {"compare_to": "gohighlevel"})
        assert all(m["source"] == m["target"] and m["confidence"] == 1.0 for m in self_map["mappings"])


async def test_schema_errors_are_clear(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        assert "No connection named" in error_text(await h.call("analyze_crm_schema", {"compare_to": "nope"}))
        assert "object" in error_text(await h.call("analyze_crm_schema", {"object": "invoice"}))
        assert "No connection named" in error_text(await h.call("analyze_crm_schema", {"connection": "zz"}))

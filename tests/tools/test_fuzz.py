"""Hypothesis fuzzing of every toolbox tool's input schema, through a real MCP client + the sandbox.

Strategies are derived from each tool's published JSON input schema (valid values per property,
mixed with arbitrary JSON of any type), so the fuzzer tests the contract an agent sees. Every call
must end in a valid result (matching the tool's output schema) or a clear tool error (is_error
with text) — never a protocol error or exception — and a rejected call must leave the CRM and the
outbox exactly as they were. 200 cases per tool when CI is set, 30 locally.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import jsonschema
import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tools.test_crm_queries import crm_state, toolbox

CASES = 200 if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else 30
settings.register_profile(
    "toolbox-fuzz",
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
TOOLS = [
    "search_contacts",
    "get_contact",
    "upsert_contact",
    "add_contact_note",
    "find_free_slots",
    "analyze_crm_schema",
    "check_integration_health",
    "validate_sync",
    "generate_connector_config",
    "qualify_lead",
]
READ_ONLY = {
    "search_contacts",
    "get_contact",
    "find_free_slots",
    "analyze_crm_schema",
    "check_integration_health",
    "generate_connector_config",
}

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def valid_value(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema accepts (best effort: a strategy per JSON-schema keyword we publish)."""
    if "$ref" in schema:
        return valid_value(defs[schema["$ref"].split("/")[-1]], defs)
    if "anyOf" in schema:
        return st.one_of([valid_value(s, defs) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "array":
        items = valid_value(schema.get("items", {}), defs)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 5), 5))
    if kind == "object":
        values = valid_value(schema.get("additionalProperties") or {}, defs)
        names = schema.get("propertyNames", {})
        keys = st.text(min_size=names.get("minLength", 0), max_size=min(names.get("maxLength", 30), 30))
        return st.dictionaries(keys, values, max_size=min(schema.get("maxProperties", 4), 4))
    if kind == "string":
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", 60)
        if schema.get("format") == "date":
            return st.dates().map(lambda d: d.isoformat())
        if schema.get("format") == "date-time":
            return st.datetimes().map(lambda d: d.isoformat())
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= hi)
        return st.text(min_size=lo, max_size=min(hi, 80))
    return JSON


def arguments(schema: dict[str, Any], overrides: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Two thirds well-typed calls; one third with one argument replaced by arbitrary JSON."""
    defs = schema.get("$defs", {})
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    strat = {k: overrides[k] if k in overrides else valid_value(v, defs) for k, v in props.items()}
    valid = st.fixed_dictionaries(
        {k: s for k, s in strat.items() if k in required},
        optional={k: s for k, s in strat.items() if k not in required},
    )
    if not props:
        return valid
    junk = st.tuples(valid, st.sampled_from(sorted(props)), JSON).map(lambda t: {**t[0], t[1]: t[2]})
    return st.one_of(valid, valid, junk)


def overrides_for(tool: str, sandbox_url: str, contact_ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Steer values toward ones that can succeed; keep live checks on loopback (the sandbox)."""
    today = date.today()
    near = st.dates(min_value=today - timedelta(days=5), max_value=today + timedelta(days=45))
    out: dict[str, st.SearchStrategy[Any]] = {
        "connection": st.sampled_from([None, "gohighlevel"]) | st.text(max_size=10),
        "contact_id": st.sampled_from(contact_ids) | st.from_regex(r"[A-Za-z0-9]{20}", fullmatch=True),
        "start_date": near.map(date.isoformat),
        "end_date": near.map(date.isoformat),
        "timezone": st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"]) | st.text(max_size=12),
        "custom_fields": st.dictionaries(
            st.sampled_from(["budget", "contact.lead_score", "SbxCf000000000000006", "nope"]),
            st.integers(0, 10**6) | st.text(max_size=20),
            max_size=3,
        ),
    }
    if tool == "generate_connector_config":
        out["base_url"] = st.just(sandbox_url)
    if tool == "qualify_lead":
        out["contact_id"] = st.none() | out["contact_id"]
    return out


async def outbox_rows(h: Any) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from crm_mcp.state.models import ExternalRef, Lead, SyncOperation

    db = await h.runtime.database()
    async with db.sessions() as s:
        ops = [(o.id, o.status) for o in (await s.execute(select(SyncOperation))).scalars()]
        leads = [(x.id, str(x.data)) for x in (await s.execute(select(Lead))).scalars()]
        refs = [(str(r.id), r.remote_id) for r in (await s.execute(select(ExternalRef))).scalars()]
    return sorted(ops + leads + refs)


async def seed(h: Any) -> tuple[dict[str, Any], list[str]]:
    for i, email in enumerate(["fz1@example.com", "fz2@example.com"]):
        await h.ok("upsert_contact", {"first_name": f"Fuzz{i}", "email": email, "tags": ["fuzz"]})
    await h.settle()
    ids = [c["id"] for c in (await h.ok("search_contacts", {}))["contacts"]]
    return {t.name: t for t in (await h.client.list_tools()).tools}, ids


@pytest.mark.parametrize("tool", TOOLS)
def test_fuzz_tool_inputs(tool: str, ghl_sandbox: Any, settings_factory: Any) -> None:
    sim, server = ghl_sandbox
    sim.set_limits(burst_max=1_000_000, daily_limit=100_000_000)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(toolbox(settings_factory(server.url))) as h,
    ):
        tools, contact_ids = portal.call(seed, h)
        spec = tools[tool]
        strategy = arguments(spec.input_schema, overrides_for(tool, server.url, contact_ids))
        call: Callable[..., Any] = h.call

        @settings(settings.get_profile("toolbox-fuzz"))
        @given(args=strategy)
        def run(args: dict[str, Any]) -> None:
            before_crm, before_db = crm_state(sim), portal.call(outbox_rows, h)
            result = portal.call(call, tool, args)  # a protocol error raises here and fails the test
            if result.is_error:
                text = " ".join(getattr(c, "text", "") for c in result.content)
                assert text.strip(), f"{tool}{args}: error without text"
                assert "Internal error" not in text, f"{tool}{args}: {text}"
                assert crm_state(sim) == before_crm, f"{tool}{args} changed the CRM although rejected"
                assert portal.call(outbox_rows, h) == before_db, (
                    f"{tool}{args} changed state although rejected"
                )
                return
            assert result.structured_content is not None
            jsonschema.validate(result.structured_content, spec.output_schema)
            assert crm_state(sim) == before_crm  # no tool writes to the CRM inline
            if tool in READ_ONLY or (tool == "qualify_lead" and not args.get("apply")):
                assert portal.call(outbox_rows, h) == before_db, f"read-only {tool}{args} changed state"

        run()

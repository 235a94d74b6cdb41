"""Hypothesis fuzzing of every toolbox tool's input schema, through a real MCP client + the sandbox.

Strategies are derived from each tool's published JSON input schema (valid values per property,
mixed with arbitrary JSON of any type), so the fuzzer tests the contract an agent sees. Every call
must end in a valid result (matching the tool's output schema) or a clear tool error (is_error
with text) — never a protocol error or exception — and a rejected call must leave the CRM and the
outbox exactly as they were. 200 cases per tool when CI is set, 30 locally.

The junk values include the extremes an attacker tries first (`2**63`, year 9999, year 1 with an
offset, 100 kB strings), and every tool's published schema must bound every argument: strings by
length, numbers by range, lists and maps by size, so none of them reaches the outbox, a CRM or
the model unbounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, datetime, timedelta
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
    "create_appointment",
    "update_appointment_status",
    "get_sync_status",
    "list_dead_letters",
    "retry_failed_sync",
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
    "get_sync_status",
    "list_dead_letters",
    "search_contacts",
    "get_contact",
    "find_free_slots",
    "analyze_crm_schema",
    "check_integration_health",
    "generate_connector_config",
}

EXTREMES = st.sampled_from(
    [
        2**63,
        -(2**63),
        2**64,
        10**30,
        1e300,
        "9999-12-31",
        "9999-12-31T23:59:59",
        "0001-01-01T00:00:00+05:00",
        "x" * 100_000,
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30) | EXTREMES,
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


# Arguments whose out-of-range dates the fuzzer avoids (none: every date is bounded).
PENDING_DATE_BOUNDS: dict[str, set[str]] = {}


def arguments(
    schema: dict[str, Any], overrides: dict[str, st.SearchStrategy[Any]], *, keep: set[str] = frozenset()
) -> st.SearchStrategy[Any]:
    """Two thirds well-typed calls; one third with one argument (not in `keep`) replaced by
    arbitrary JSON."""
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
    junk = st.tuples(valid, st.sampled_from(sorted(set(props) - keep)), JSON).map(
        lambda t: {**t[0], t[1]: t[2]}
    )
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
    sane = st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2099, 12, 30))
    for name in PENDING_DATE_BOUNDS.get(tool, ()):
        out[name] = st.none() | sane.map(datetime.isoformat)
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
        strategy = arguments(
            spec.input_schema,
            overrides_for(tool, server.url, contact_ids),
            keep=PENDING_DATE_BOUNDS.get(tool, set()),
        )
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


# -- every argument bounded -------------------------------------------------------------------

# Arguments still without a bound (none).
PENDING_BOUNDS: set[tuple[str, str]] = set()


def unbounded(schema: dict[str, Any], defs: dict[str, Any], path: str = "") -> list[str]:
    """Where a JSON schema accepts values of any size: strings without maxLength (enums, consts
    and dates aside: a date parses or fails), numbers without both bounds, lists without
    maxItems, maps without maxProperties."""
    if "$ref" in schema:
        return unbounded(defs[schema["$ref"].split("/")[-1]], defs, path)
    out = [
        p
        for k in ("anyOf", "oneOf", "allOf")
        for sub in schema.get(k, [])
        for p in unbounded(sub, defs, path)
    ]
    kind = schema.get("type")
    dates = schema.get("format") in {"date", "date-time"}
    if kind == "string" and not dates and not {"maxLength", "enum", "const"} & schema.keys():
        out.append(f"{path}: string without maxLength")
    if kind in ("integer", "number") and not {"minimum", "exclusiveMinimum"} & schema.keys():
        out.append(f"{path}: {kind} without a minimum")
    if kind in ("integer", "number") and not {"maximum", "exclusiveMaximum"} & schema.keys():
        out.append(f"{path}: {kind} without a maximum")
    if kind == "array":
        if "maxItems" not in schema:
            out.append(f"{path}: list without maxItems")
        out += unbounded(schema.get("items", {}), defs, f"{path}[]")
    if kind == "object":
        extra = schema.get("additionalProperties")
        if (extra or "properties" not in schema) and extra is not False and "maxProperties" not in schema:
            out.append(f"{path}: map without maxProperties")
        if isinstance(extra, dict):
            out += unbounded(extra, defs, f"{path}{{}}")
        for name, sub in schema.get("properties", {}).items():
            out += unbounded(sub, defs, f"{path}.{name}".lstrip("."))
    if kind is None and not {"anyOf", "oneOf", "allOf", "enum", "const", "$ref"} & schema.keys():
        out.append(f"{path}: any JSON value")
    return out


@pytest.mark.anyio
async def test_every_argument_of_every_tool_is_bounded(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        problems = []
        for tool in (await h.client.list_tools()).tools:
            schema = tool.input_schema
            for problem in unbounded(schema, schema.get("$defs", {})):
                if (
                    tool.name,
                    problem.split(":")[0].split(".")[0].split("[")[0].split("{")[0],
                ) not in PENDING_BOUNDS:
                    problems.append(f"{tool.name}.{problem}")
        assert not problems, problems


MEGABYTE = "x" * 1_000_000
ATTACKS = [
    (
        "create_appointment",
        {"first_name": "Y", "email": "y@example.com", "start_time": "9999-12-31T23:00:00"},
    ),
    (
        "create_appointment",
        {"first_name": "Y", "email": "y@example.com", "start_time": "0001-01-01T00:00:00+05:00"},
    ),
    (
        "create_appointment",
        {
            "first_name": "Y",
            "email": "y@example.com",
            "start_time": "2026-12-01T15:00:00Z",
            "connection": MEGABYTE,
        },
    ),
    ("upsert_contact", {"first_name": "Y", "email": "y@example.com", "custom_fields": {"budget": MEGABYTE}}),
    ("upsert_contact", {"first_name": "Y", "email": "y@example.com", "custom_fields": {"budget": 2**63}}),
    ("upsert_contact", {"first_name": "Y", "email": "y@example.com", "connection": MEGABYTE}),
    ("list_dead_letters", {"offset": 2**63}),
    ("list_dead_letters", {"connection": MEGABYTE}),
    ("retry_failed_sync", {"operation_id": MEGABYTE}),
    ("find_free_slots", {"start_date": "9999-12-25", "end_date": "9999-12-31"}),
    ("qualify_lead", {"first_name": "Y", "last_activity": "9999-12-31T00:00:00"}),
    ("update_appointment_status", {"appointment_id": MEGABYTE, "action": "confirm"}),
    ("search_contacts", {"connection": MEGABYTE}),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("tool", "args"), ATTACKS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(ATTACKS)])
async def test_out_of_range_values_are_clear_tool_errors(
    ghl_sandbox: Any, settings_factory: Any, tool: str, args: dict[str, Any]
) -> None:
    """The values from the security review: a clear error naming the argument, nothing stored,
    and nothing echoed back at length."""
    sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        before_crm, before_db = crm_state(sim), await outbox_rows(h)
        result = await h.call(tool, args)
        assert result.is_error, result.structured_content
        text = " ".join(getattr(c, "text", "") for c in result.content)
        assert "Internal error" not in text and len(text) < 5_000, text[:500]
        assert any(name in text for name in args), text
        assert crm_state(sim) == before_crm and await outbox_rows(h) == before_db

"""Strict, helpful inputs, through an MCP client: an unknown argument is refused (with the closest
valid name and the list of valid ones) before anything runs, and every invalid argument is answered
in one sentence that names it and what it must be, never with pydantic's own text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.harness import harness

pytestmark = pytest.mark.anyio

PYDANTIC_INTERNALS = ("pydantic", "validation error", "Input should be", "type=", "input_value", "[key]")


def text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def future(days: int = 10) -> str:
    start = (datetime.now(UTC) + timedelta(days=days)).replace(hour=15, minute=0, second=0, microsecond=0)
    return start.replace(tzinfo=None).isoformat()


async def test_a_misspelled_argument_is_refused_with_the_closest_name(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        booking = {"first_name": "Jane", "email": "jane@example.com", "start_time": future()}
        r = await h.call(
            "create_appointment", {**booking, "duraton_minutes": 90, "timezon": "America/New_York"}
        )
        assert r.is_error
        message = text(r)
        assert "`duraton_minutes`" in message and "did you mean `duration_minutes`?" in message
        assert "`timezon`" in message and "did you mean `timezone`?" in message
        assert "Valid: first_name, start_time, email" in message and "idempotency_key" in message
        assert "\n" not in message
        # nothing was booked: no local record, no operation, nothing in the CRM
        status = await h.ok("get_sync_status", {"max_age_seconds": 0})
        assert not any(status["totals"].values())
        await h.deliver()
        assert sim.snapshot()["appointments"] == []

        one = await h.call("search_contacts", {"tags": ["vip"]})
        assert one.is_error
        assert text(one).startswith("Unknown argument `tags` for search_contacts; did you mean `tag`?")

        none = await h.call("get_sync_status", {"verbose": True})
        assert none.is_error and "Valid: max_age_seconds, detail." in text(none)

        ok = await h.ok(
            "create_appointment", {**booking, "duration_minutes": 90, "timezone": "America/New_York"}
        )
        assert ok["appointment"]["start_time"].endswith(("-05:00", "-04:00"))


async def test_every_input_schema_refuses_unknown_arguments(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        tools = (await h.client.list_tools()).tools
        assert tools and all(t.input_schema.get("additionalProperties") is False for t in tools)


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        (
            "create_appointment",
            {"first_name": "Jane", "email": "jane@example.com", "start_time": "tomorrow"},
            "`start_time` must be an ISO-8601 date-time (got 'tomorrow'), e.g. ",
        ),
        (
            "create_appointment",
            {"first_name": "Jane", "email": "jane@example.com", "start_time": "9999-01-01T00:00:00"},
            "`start_time` is not valid: year 9999 is out of range",
        ),
        (
            "create_appointment",
            {"email": "jane@example.com", "start_time": "2030-01-15T15:00:00", "duration_minutes": 1000},
            "`first_name` is required; `duration_minutes` must be at most 480",
        ),
        (
            "create_appointment",
            {"first_name": "Jane", "email": "not-an-email", "start_time": "2030-01-15T15:00:00"},
            "`email` has the wrong format, e.g. 'jane@example.com'",
        ),
        (
            "update_appointment_status",
            {"appointment_id": "x", "action": "reschedule"},
            "`action` must be one of 'confirm', 'cancel', 'complete' or 'update'",
        ),
        (
            "upsert_contact",
            {"first_name": "Y", "email": "y@example.com", "custom_fields": {"budget": "x" * 3000}},
            "`custom_fields.budget` must be one of: text of at most 2000 characters, an integer",
        ),
        ("search_contacts", {"limit": "many"}, "`limit` must be an integer (got 'many')"),
        ("list_dead_letters", {"offset": 2**63}, "`offset` must be at most 1000000"),
    ],
)
async def test_invalid_arguments_get_one_actionable_sentence(
    tool: str, args: dict[str, Any], expected: str, ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with harness(settings_factory(server.url)) as h:
        r = await h.call(tool, args)
        assert r.is_error
        message = text(r)
        assert message.startswith("Invalid argument") and f" for {tool}: " in message, message
        assert expected in message, message
        assert message.endswith("Nothing was done; fix and call again."), message
        assert "\n" not in message and "http" not in message, message
        assert not [w for w in PYDANTIC_INTERNALS if w in message], message

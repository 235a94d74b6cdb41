"""Tools choose connections by capability, and say what to do when one cannot serve a call.

Through a real MCP client with GoHighLevel and HubSpot simulators and an n8n (webhook-only)
connection configured side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crm_mcp.connectors.registry import providers
from tests.harness import harness

pytestmark = pytest.mark.anyio


@pytest.fixture
def handles() -> Iterator[dict[str, Any]]:
    started = {p.name: p.sandbox(0) for p in providers() if p.sandbox is not None}
    try:
        yield started
    finally:
        for handle in started.values():
            handle.stop()


def text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_capability_errors_say_what_to_do_and_health_lists_capabilities(
    settings_factory: Any, handles: dict[str, Any]
) -> None:
    settings = settings_factory(handles["gohighlevel"].url, n8n_secret="whsec_" + "QUJD" * 8)
    for name, handle in handles.items():
        settings = settings.with_provider(name, **handle.connection_options())
    async with harness(settings) as h:
        # two CRMs can search contacts: the error lists both and how to choose
        several = text(await h.call("search_contacts", {}))
        assert "gohighlevel (gohighlevel)" in several and "hubspot (hubspot)" in several
        assert "CRM_MCP_DEFAULT_CONNECTION" in several
        # only one has calendars: no connection argument needed...
        slots = await h.call("find_free_slots", {"start_date": "2026-12-21", "end_date": "2026-12-22"})
        assert not slots.is_error, text(slots)
        # ...and asking HubSpot for them says what it lacks, who has it, and what to do instead
        refused = text(
            await h.call(
                "find_free_slots",
                {"start_date": "2026-12-21", "end_date": "2026-12-22", "connection": "hubspot"},
            )
        )
        assert "no calendars capability" in refused and "Connections that have it: gohighlevel" in refused
        assert "create_appointment" in refused and "Retrying unchanged will not help" in refused
        health = await h.ok("check_integration_health", {})
        by_name = {c["connection"]: c for c in health["connections"]}
        assert "calendars" in by_name["gohighlevel"]["capabilities"]
        assert "batch" in by_name["hubspot"]["capabilities"]
        assert "calendars" not in by_name["hubspot"]["capabilities"]
        # a webhook-only connection has nothing to ping and is not reported as broken
        assert by_name["n8n"]["capabilities"] == [] and by_name["n8n"]["check_error"] is None
        assert by_name["n8n"]["credentials_valid"] is None

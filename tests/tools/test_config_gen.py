"""generate_connector_config through MCP: validation, masking, scopes, webhook setup, live verify."""

from __future__ import annotations

from typing import Any

import pytest

from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_CALENDAR_ID,
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
)
from tests.tools.test_crm_queries import error_text, toolbox

pytestmark = pytest.mark.anyio

CANARY = "canary-SECRET-token-0123456789"


async def test_env_config_masks_token_and_lists_scopes(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok(
            "generate_connector_config",
            {
                "token": CANARY,
                "location_id": SANDBOX_LOCATION_ID,
                "calendar_id": SANDBOX_CALENDAR_ID,
                "tools_wanted": ["search_contacts", "create_appointment"],
                "public_base_url": "https://crm.example.com/",
            },
        )
        assert "CRM_MCP_GHL_TOKEN=cana…" in r["config_text"]
        assert f"CRM_MCP_GHL_LOCATION_ID={SANDBOX_LOCATION_ID}" in r["config_text"]
        assert CANARY not in str(r) and r["token_masked"] is True
        scopes = {s["scope"]: s["needed_by"] for s in r["scopes"]}
        assert scopes["contacts.readonly"] == ["search_contacts"]
        assert "calendars/events.write" in scopes and "locations.readonly" not in scopes
        assert r["webhook_url"] == "https://crm.example.com/webhooks/gohighlevel/gohighlevel"
        assert "AppointmentCreate" in r["webhook_events"] and "100" in r["rate_limits"]["burst"]
        assert r["verified"] is None


async def test_toml_config_for_a_named_connection(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok(
            "generate_connector_config",
            {"name": "clinic-east", "format": "toml", "token": CANARY, "location_id": SANDBOX_LOCATION_ID},
        )
        import tomllib

        table = tomllib.loads(r["config_text"])["connections"]["clinic-east"]
        assert table["provider"] == "gohighlevel" and table["token"] == "cana…"
        assert "locations.readonly" in r["scope_string"].split()
        assert r["webhook_url"] is None and any("public_base_url" in s for s in r["next_steps"])
        warn = await h.ok(
            "generate_connector_config", {"name": "clinic-east", "location_id": SANDBOX_LOCATION_ID}
        )
        assert any("format=toml" in w for w in warn["warnings"])


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ({"location_id": "short"}, ["location_id", "20"]),
        ({"location_id": "x" * 19 + "!"}, ["location_id"]),
        ({"calendar_id": "abc"}, ["calendar_id"]),
        ({"token": "a b"}, ["token"]),
        ({"tools_wanted": ["make_coffee"]}, ["make_coffee", "valid"]),
        ({"public_base_url": "http://example.com"}, ["public_base_url", "https"]),
        ({"name": "Bad Name"}, ["name"]),
        ({"location_id": "short", "calendar_id": "abc"}, ["location_id", "calendar_id"]),
        ({"verify": True}, ["verify=true needs token"]),
        ({"format": "yaml"}, ["format"]),
    ],
)
async def test_bad_input_is_one_clear_error(
    ghl_sandbox: Any, settings_factory: Any, args: dict[str, Any], needles: list[str]
) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        text = error_text(await h.call("generate_connector_config", args))
        for needle in needles:
            assert needle in text


async def test_verify_live_against_the_sandbox(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        good = await h.ok(
            "generate_connector_config",
            {
                "token": SANDBOX_TOKEN,
                "location_id": SANDBOX_LOCATION_ID,
                "calendar_id": SANDBOX_CALENDAR_ID,
                "verify": True,
                "base_url": server.url,
            },
        )
        assert good["verified"] is True
        assert {c["name"] for c in good["checks"]} == {"credentials", "calendar", "custom_fields"}
        assert good["checks"][0]["latency_ms"] is not None
        bad_token = await h.ok(
            "generate_connector_config",
            {"token": CANARY, "location_id": SANDBOX_LOCATION_ID, "verify": True, "base_url": server.url},
        )
        assert bad_token["verified"] is False
        assert "refused" in bad_token["checks"][0]["detail"] and CANARY not in str(bad_token)
        wrong_cal = await h.ok(
            "generate_connector_config",
            {
                "token": SANDBOX_TOKEN,
                "location_id": SANDBOX_LOCATION_ID,
                "calendar_id": "Missing0000000000000",
                "verify": True,
                "base_url": server.url,
            },
        )
        cal = next(c for c in wrong_cal["checks"] if c["name"] == "calendar")
        assert not cal["ok"] and SANDBOX_CALENDAR_ID in cal["detail"]
        other_location = await h.ok(
            "generate_connector_config",
            {
                "token": SANDBOX_TOKEN,
                "location_id": "Other000000000000000",
                "verify": True,
                "base_url": server.url,
            },
        )
        assert other_location["verified"] is False

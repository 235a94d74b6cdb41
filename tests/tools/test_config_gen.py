"""generate_connector_config through MCP, for every provider with a setup template: .env and TOML
text with secrets as placeholders, scopes, webhook setup, input validation (all problems at once),
the refusal of secrets, and verify against each sandbox as the connection is configured."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from crm_mcp.connectors.registry import get_provider
from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_CALENDAR_ID, SANDBOX_LOCATION_ID
from tests.tools.test_crm_queries import error_text, toolbox

pytestmark = pytest.mark.anyio

CANARY = "canary-SECRET-token-0123456789"
TOOL = "generate_connector_config"
NO_GHL = {"ghl_token": None, "ghl_location_id": None, "ghl_calendar_id": None}


@pytest.fixture
def hubspot() -> Iterator[Any]:
    """The HubSpot simulator's handle (url, connection_options)."""
    handle = get_provider("hubspot").sandbox(0)  # type: ignore[misc]
    try:
        yield handle
    finally:
        handle.stop()


def hubspot_settings(settings_factory: Any, handle: Any, *, ghl: bool = False, **extra: Any) -> Any:
    """Settings with HubSpot's default connection on its sandbox (and GoHighLevel's when `ghl`)."""
    values = {f"hubspot_{k}": v for k, v in handle.connection_options().items()}
    values.update(extra)
    return settings_factory("http://127.0.0.1:9", **({} if ghl else NO_GHL), **values)


async def test_env_config_has_placeholders_scopes_and_webhook(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok(
            TOOL,
            {
                "options": {"location_id": SANDBOX_LOCATION_ID, "calendar_id": SANDBOX_CALENDAR_ID},
                "tools_wanted": ["search_contacts", "create_appointment"],
                "public_base_url": "https://crm.example.com/",
            },
        )
        assert r["provider"] == "gohighlevel"  # the only configured connection's provider
        assert "CRM_MCP_GHL_TOKEN=<your token>" in r["config_text"]
        assert f"CRM_MCP_GHL_LOCATION_ID={SANDBOX_LOCATION_ID}" in r["config_text"]
        scopes = {s["scope"]: s["needed_by"] for s in r["scopes"]}
        assert scopes["contacts.readonly"] == ["search_contacts"]
        assert "calendars/events.write" in scopes and "locations.readonly" not in scopes
        assert r["webhook_url"] == "https://crm.example.com/webhooks/gohighlevel/gohighlevel"
        assert "AppointmentCreate" in r["webhook_events"] and "100 requests" in r["limits"]
        assert r["verified"] is None and not r["warnings"]
        assert any("CRM_MCP_GHL_TOKEN" in s and "never in this chat" in s for s in r["next_steps"])
        assert "verify=true" in r["next_steps"][-1]


async def test_toml_config_for_a_named_connection(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        r = await h.ok(
            TOOL,
            {"name": "clinic-east", "format": "toml", "options": {"location_id": SANDBOX_LOCATION_ID}},
        )
        table = tomllib.loads(r["config_text"])["connections"]["clinic-east"]
        assert table == {
            "provider": "gohighlevel",
            "token": "<your token>",
            "location_id": SANDBOX_LOCATION_ID,
        }
        assert "locations.readonly" in r["scope_string"].split()
        assert r["webhook_url"] is None and any("public_base_url" in s for s in r["next_steps"])
        assert any("`token` in [connections.clinic-east]" in s for s in r["next_steps"])
        warn = await h.ok(TOOL, {"name": "clinic-east"})
        assert any("format=toml" in w for w in warn["warnings"])
        assert any("location_id is missing" in w for w in warn["warnings"])


async def test_hubspot_env_and_toml(hubspot: Any, settings_factory: Any) -> None:
    async with toolbox(hubspot_settings(settings_factory, hubspot)) as h:
        env = await h.ok(
            TOOL, {"options": {"portal_id": 62515}, "public_base_url": "https://crm.example.com"}
        )
        assert env["provider"] == "hubspot"
        assert env["config_text"] == "CRM_MCP_HUBSPOT_TOKEN=<your token>\nCRM_MCP_HUBSPOT_PORTAL_ID=62515\n"
        assert "crm.objects.contacts.write" in env["scope_string"].split()
        assert env["webhook_url"] == "https://crm.example.com/webhooks/hubspot/hubspot"
        assert "contact.creation" in env["webhook_events"] and "250,000" in env["limits"]
        toml = await h.ok(TOOL, {"name": "agency", "format": "toml", "options": {"portal_id": "62515"}})
        table = tomllib.loads(toml["config_text"])["connections"]["agency"]
        assert table == {"provider": "hubspot", "token": "<your token>", "portal_id": "62515"}


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        ({"options": {"location_id": "short"}}, ["options.location_id", "ve9EPM428h8vShlRW1KT"]),
        ({"options": {"location_id": "x" * 19 + "!"}}, ["options.location_id"]),
        ({"options": {"calendar_id": "abc"}}, ["options.calendar_id"]),
        ({"options": {"portal_id": "62515"}}, ["takes no option portal_id", "location_id"]),
        ({"provider": "hubspot", "options": {"portal_id": "p-1"}}, ["options.portal_id", "20385638"]),
        ({"options": {"base_url": "http://example.com"}}, ["options.base_url", "https"]),
        ({"options": {"respect_free_slots": "maybe"}}, ["options.respect_free_slots"]),
        ({"tools_wanted": ["make_coffee"]}, ["make_coffee", "valid"]),
        ({"provider": "hubspot", "tools_wanted": ["find_free_slots"]}, ["find_free_slots", "HubSpot"]),
        ({"public_base_url": "http://example.com"}, ["public_base_url", "https"]),
        ({"name": "Bad Name"}, ["name"]),
        ({"format": "yaml"}, ["format"]),
        ({"provider": "salesforce"}, ["provider"]),
    ],
)
async def test_bad_input_is_one_clear_sentence(
    ghl_sandbox: Any, settings_factory: Any, args: dict[str, Any], needles: list[str]
) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        text = error_text(await h.call(TOOL, args))
        for needle in needles:
            assert needle in text


async def test_all_problems_are_reported_at_once(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        text = error_text(
            await h.call(
                TOOL,
                {
                    "name": "Bad Name",
                    "options": {"location_id": "short", "calendar_id": "abc", "nope": "1"},
                    "tools_wanted": ["make_coffee"],
                    "public_base_url": "ftp://x",
                },
            )
        )
        problems = [line for line in text.splitlines() if line.startswith("- ")]
        assert len(problems) == 6, text
        for needle in ("name:", "location_id", "calendar_id", "nope", "make_coffee", "public_base_url"):
            assert needle in text


@pytest.mark.parametrize(
    ("provider", "options", "var"),
    [
        ("gohighlevel", {"token": CANARY}, "CRM_MCP_GHL_TOKEN"),
        (
            "gohighlevel",
            {"client_secret": CANARY, "location_id": SANDBOX_LOCATION_ID},
            "CRM_MCP_GHL_CLIENT_SECRET",
        ),
        ("hubspot", {"app_secret": CANARY}, "CRM_MCP_HUBSPOT_APP_SECRET"),
        ("hubspot", {"refresh_token": CANARY}, "CRM_MCP_HUBSPOT_REFRESH_TOKEN"),
    ],
)
async def test_secret_options_are_refused_without_echo(
    ghl_sandbox: Any, settings_factory: Any, provider: str, options: dict[str, str], var: str
) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        text = error_text(await h.call(TOOL, {"provider": provider, "options": options}))
        assert "secrets never go through this tool" in text and var in text
        assert CANARY not in text


async def test_provider_is_required_when_several_are_configured(
    ghl_sandbox: Any, hubspot: Any, settings_factory: Any
) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(hubspot_settings(settings_factory, hubspot, ghl=True, ghl_base_url=server.url)) as h:
        tool = next(t for t in (await h.client.list_tools()).tools if t.name == TOOL)
        assert "provider" in tool.input_schema["required"]
        assert tool.input_schema["properties"]["provider"]["enum"] == [
            "gohighlevel",
            "hubspot",
            "ringcentral",
            "zoho",
        ]
        assert "provider" in error_text(await h.call(TOOL, {}))
        both = [await h.ok(TOOL, {"provider": p, "verify": True}) for p in ("gohighlevel", "hubspot")]
        assert [r["verified"] for r in both] == [True, True]


async def test_verify_the_configured_connection(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url)) as h:
        good = await h.ok(TOOL, {"verify": True})
        assert good["verified"] is True
        assert [c["name"] for c in good["checks"]] == ["credentials", "calendar", "custom_fields"]
        assert good["checks"][0]["latency_ms"] is not None
        assert SANDBOX_CALENDAR_ID in good["checks"][1]["detail"]
        assert "lead_score" not in good["checks"][2]["detail"]  # the sandbox has the logical fields
        assert not any("verify=true" in s for s in good["next_steps"])
        differs = await h.ok(TOOL, {"verify": True, "options": {"location_id": "Other000000000000000"}})
        assert any("differs from the configured" in w for w in differs["warnings"])
        other = await h.ok(TOOL, {"verify": True, "name": "clinic-east", "format": "toml"})
        assert other["verified"] is False
        assert "No connection named 'clinic-east'" in other["checks"][0]["detail"]
        assert "crm-mcp.toml" in other["checks"][0]["detail"]
        wrong = await h.ok(TOOL, {"provider": "hubspot", "verify": True, "name": "gohighlevel"})
        assert wrong["verified"] is False and "provider='gohighlevel'" in wrong["checks"][0]["detail"]


async def test_verify_bad_token_names_the_env_var(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url, ghl_token=CANARY)) as h:
        r = await h.ok(TOOL, {"verify": True})
        assert r["verified"] is False and [c["name"] for c in r["checks"]] == ["credentials"]
        assert "refused" in r["checks"][0]["detail"] and "CRM_MCP_GHL_TOKEN" in r["checks"][0]["detail"]
        assert CANARY not in str(r)
        assert r["next_steps"][0].startswith("Fix the failed checks")


async def test_verify_missing_calendar_lists_the_real_ones(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url, ghl_calendar_id="Missing0000000000000")) as h:
        r = await h.ok(TOOL, {"verify": True})
        cal = next(c for c in r["checks"] if c["name"] == "calendar")
        assert r["verified"] is False and not cal["ok"]
        assert SANDBOX_CALENDAR_ID in cal["detail"] and "CRM_MCP_GHL_CALENDAR_ID" in cal["detail"]


async def test_verify_a_foreign_location_says_which_option(ghl_sandbox: Any, settings_factory: Any) -> None:
    _sim, server = ghl_sandbox
    async with toolbox(settings_factory(server.url, ghl_location_id="Other000000000000000")) as h:
        r = await h.ok(TOOL, {"verify": True})
        assert r["verified"] is False and "CRM_MCP_GHL_LOCATION_ID" in r["checks"][0]["detail"]


async def test_verify_hubspot_good_and_bad(hubspot: Any, settings_factory: Any) -> None:
    async with toolbox(hubspot_settings(settings_factory, hubspot)) as h:
        good = await h.ok(TOOL, {"verify": True})
        assert good["verified"] is True
        assert [c["name"] for c in good["checks"]] == ["credentials", "custom_fields"]  # no calendars
        assert "not found" not in good["checks"][1]["detail"]
    async with toolbox(hubspot_settings(settings_factory, hubspot, hubspot_token=CANARY)) as h:
        bad = await h.ok(TOOL, {"verify": True})
        assert bad["verified"] is False and "CRM_MCP_HUBSPOT_TOKEN" in bad["checks"][0]["detail"]
        assert CANARY not in str(bad)
    async with toolbox(hubspot_settings(settings_factory, hubspot, hubspot_portal_id="999")) as h:
        foreign = await h.ok(TOOL, {"verify": True})
        assert foreign["verified"] is False and "portal" in foreign["checks"][0]["detail"]


async def test_verify_a_toml_connection_points_at_its_table(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Any
) -> None:
    _sim, server = ghl_sandbox
    (tmp_path / "crm-mcp.toml").write_text(
        f'[connections.clinic-east]\nprovider = "gohighlevel"\ntoken = "{CANARY}"\n'
        f'location_id = "{SANDBOX_LOCATION_ID}"\nbase_url = "{server.url}"\n'
    )
    async with toolbox(settings_factory(server.url, **NO_GHL)) as h:
        r = await h.ok(TOOL, {"name": "clinic-east", "format": "toml", "verify": True})
        assert r["verified"] is False and "[connections.clinic-east]" in r["checks"][0]["detail"]
        assert CANARY not in str(r)


async def test_verify_never_contacts_an_address_from_the_call(
    ghl_sandbox: Any, settings_factory: Any
) -> None:
    """verify=true checks the connection as configured on this server: a base_url (or any other
    option) in the call is never contacted, so the tool cannot be used to probe loopback ports."""
    import socket

    _sim, server = ghl_sandbox
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        async with toolbox(settings_factory(server.url)) as h:
            for url in (f"http://127.0.0.1:{port}", f"http://localhost:{port}/v1"):
                for provider in ("gohighlevel", "hubspot"):
                    await h.call(TOOL, {"provider": provider, "verify": True, "options": {"base_url": url}})
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected

"""generate_connector_config: a validated GoHighLevel connection config, with what it needs to work.

Most failed integrations fail at setup: a token without the right scopes, a location id pasted
from the wrong place, a webhook never registered. This tool turns the inputs into the exact .env
lines or crm-mcp.toml table, lists the OAuth scopes the wanted tools need, the webhook URL and
events to register and the limits that apply, and (verify=true) tries the credentials live and
says precisely what is wrong. The token is never echoed back in full.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from crm_mcp.tools._base import crm_tool

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

GHL_API = "https://services.leadconnectorhq.com"
GHL_ID = re.compile(r"[A-Za-z0-9]{20}")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
WEBHOOK_EVENTS = [
    "ContactCreate",
    "ContactUpdate",
    "AppointmentCreate",
    "AppointmentUpdate",
    "AppointmentDelete",
]
_R_CONTACTS, _W_CONTACTS = "contacts.readonly", "contacts.write"
_R_CAL, _R_EVENTS, _W_EVENTS = "calendars.readonly", "calendars/events.readonly", "calendars/events.write"
_R_FIELDS, _R_LOCATION = "locations/customFields.readonly", "locations.readonly"
TOOL_SCOPES: dict[str, list[str]] = {
    "search_contacts": [_R_CONTACTS],
    "get_contact": [_R_CONTACTS, _R_EVENTS, _R_FIELDS],
    "upsert_contact": [_W_CONTACTS, _R_FIELDS],
    "add_contact_note": [_R_CONTACTS, _W_CONTACTS],
    "find_free_slots": [_R_CAL],
    "create_appointment": [_W_CONTACTS, _R_CAL, _R_EVENTS, _W_EVENTS, _R_FIELDS],
    "update_appointment_status": [_W_CONTACTS, _W_EVENTS, _R_FIELDS],
    "qualify_lead": [_R_CONTACTS, _W_CONTACTS, _R_EVENTS, _R_FIELDS],
    "analyze_crm_schema": [_R_FIELDS],
    "validate_sync": [_R_CONTACTS, _R_EVENTS],
    "check_integration_health": [_R_LOCATION],
    "get_sync_status": [],
    "list_dead_letters": [],
    "retry_failed_sync": [],
    "generate_connector_config": [],
}


class ScopeNeed(BaseModel):
    scope: str
    needed_by: list[str] = Field(description="Wanted tools that need this scope.")


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    latency_ms: float | None = None


class ConfigResult(BaseModel):
    provider: Literal["gohighlevel"]
    connection: str
    format: Literal["env", "toml"]
    config_text: str = Field(description="Paste into .env or crm-mcp.toml; replace the masked token.")
    token_masked: bool = Field(description="True: the token is shown as its first 4 characters + '…'.")
    scopes: list[ScopeNeed]
    scope_string: str = Field(description="Space-separated scopes for the GHL app / private integration.")
    webhook_url: str | None = Field(
        None, description="Register this URL in the GHL app (needs public_base_url)."
    )
    webhook_events: list[str]
    rate_limits: dict[str, str]
    verified: bool | None = Field(None, description="None: not verified (verify=false).")
    checks: list[Check] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    next_steps: list[str] = Field(default_factory=list)


def mask(token: str) -> str:
    return token[:4] + "…"


def validate_inputs(
    name: str,
    token: str | None,
    location_id: str | None,
    calendar_id: str | None,
    tools: list[str],
    public_base_url: str | None,
    base_url: str | None,
) -> list[str]:
    """Every problem at once, each naming the field, what is wrong and what a good value looks like."""
    problems = []
    if not NAME.fullmatch(name):
        problems.append(
            "name: lower-case letters, digits, '-' or '_', starting with a letter (e.g. 'gohighlevel')."
        )
    if token is not None and (len(token) < 8 or any(ch.isspace() for ch in token)):
        problems.append(
            "token: at least 8 characters without spaces (a GHL Private Integration token or "
            "OAuth access token)."
        )
    for label, value in (("location_id", location_id), ("calendar_id", calendar_id)):
        if value is not None and not GHL_ID.fullmatch(value):
            problems.append(
                f"{label}: GoHighLevel ids are 20 letters/digits (e.g. ve9EPM428h8vShlRW1KT); "
                f"got {len(value)} character(s){' with other symbols' if value.isalnum() is False else ''}."
            )
    unknown = sorted(set(tools) - set(TOOL_SCOPES))
    if unknown:
        problems.append(
            f"tools_wanted: unknown tool(s) {unknown[:5]}; valid: {', '.join(sorted(TOOL_SCOPES))}."
        )
    for label, url in (("public_base_url", public_base_url), ("base_url", base_url)):
        if url is not None and not _url_ok(url):
            problems.append(f"{label}: must be an https:// URL (plain http:// only for 127.0.0.1/localhost).")
    return problems


def _url_ok(url: str) -> bool:
    from crm_mcp.settings import check_base_url

    try:
        check_base_url(url, setting="url")
    except Exception:
        return False
    return True


def render(
    fmt: str,
    name: str,
    token: str | None,
    location_id: str | None,
    calendar_id: str | None,
    base_url: str | None,
) -> str:
    shown = mask(token) if token else "<paste your token>"
    if fmt == "env":
        lines = [
            f"CRM_MCP_GHL_TOKEN={shown}",
            f"CRM_MCP_GHL_LOCATION_ID={location_id or '<20-char location id>'}",
        ]
        if calendar_id:
            lines.append(f"CRM_MCP_GHL_CALENDAR_ID={calendar_id}")
        if base_url and base_url.rstrip("/") != GHL_API:
            lines.append(f"CRM_MCP_GHL_BASE_URL={base_url.rstrip('/')}")
        return "\n".join(lines) + "\n"
    lines = [
        f"[connections.{name}]",
        'provider = "gohighlevel"',
        f'token = "{shown}"',
        f'location_id = "{location_id or "<20-char location id>"}"',
    ]
    if calendar_id:
        lines.append(f'calendar_id = "{calendar_id}"')
    if base_url and base_url.rstrip("/") != GHL_API:
        lines.append(f'base_url = "{base_url.rstrip("/")}"')
    return "\n".join(lines) + "\n"


async def verify_live(token: str, location_id: str, calendar_id: str | None, base_url: str) -> list[Check]:
    """Ping, calendars and custom fields with a throwaway connector; each failure says what to fix."""
    from crm_mcp.connectors.base import Calendars, CustomFields, require
    from crm_mcp.connectors.registry import build_connector
    from crm_mcp.errors import AuthError, CRMError, NotFoundError, register_secret

    register_secret(token)
    options = {
        "token": token,
        "location_id": location_id,
        "base_url": base_url,
        "max_attempts": 1,
        "timeout_s": 10.0,
    }
    connector = build_connector("gohighlevel", "config-verify", options)
    checks: list[Check] = []

    def failed(step: str, exc: CRMError) -> Check:
        if isinstance(exc, AuthError):
            why = (
                "the token was refused: create a new Private Integration token in this sub-account "
                "(Settings > Private Integrations) with the scopes listed, or re-run OAuth."
            )
        elif isinstance(exc, NotFoundError):
            why = f"not found: check location_id {location_id} is this token's sub-account."
        else:
            why = f"{type(exc).__name__}: {exc}"
        return Check(name=step, ok=False, detail=why)

    try:
        started = time.perf_counter()
        try:
            await connector.ping()
            ms = round((time.perf_counter() - started) * 1000, 1)
            checks.append(
                Check(name="credentials", ok=True, detail="token accepted for the location", latency_ms=ms)
            )
        except CRMError as exc:
            return [failed("credentials", exc)]
        try:
            calendars = await require(connector, Calendars).list_calendars()
            ids = {c.id for c in calendars}
            if calendar_id and calendar_id not in ids:
                names = ", ".join(f"{c.id} ({c.name})" for c in calendars[:10]) or "none"
                checks.append(
                    Check(
                        name="calendar",
                        ok=False,
                        detail=f"calendar {calendar_id} is not in this location; calendars: {names}",
                    )
                )
            else:
                checks.append(
                    Check(name="calendar", ok=True, detail=f"{len(calendars)} calendar(s) readable")
                )
        except CRMError as exc:
            checks.append(failed("calendar", exc))
        try:
            keys = {f.key for f in await require(connector, CustomFields).list_custom_fields()}
            wanted = {"contact.appointment_status", "contact.next_appointment_date", "contact.lead_score"}
            missing = sorted(wanted - keys)
            detail = f"{len(keys)} custom field(s)" + (
                f"; optional fields missing: {missing}" if missing else ""
            )
            checks.append(Check(name="custom_fields", ok=True, detail=detail))
        except CRMError as exc:
            checks.append(failed("custom_fields", exc))
    finally:
        await connector.aclose()
    return checks


def register(server: MCPServer[Any], rt: Runtime) -> None:
    @crm_tool(
        server,
        title="Generate and verify a CRM connection config",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=True,
    )
    async def generate_connector_config(
        provider: Annotated[Literal["gohighlevel"], Field(description="CRM provider.")] = "gohighlevel",
        name: Annotated[str, Field(max_length=64, description="Connection name.")] = "gohighlevel",
        token: Annotated[
            str | None,
            Field(
                max_length=4096,
                description="Private Integration token or OAuth access token; shown back masked.",
            ),
        ] = None,
        location_id: Annotated[
            str | None,
            Field(
                max_length=64,
                description="Sub-account (location) id: 20 letters/digits.",
                examples=["ve9EPM428h8vShlRW1KT"],
            ),
        ] = None,
        calendar_id: Annotated[
            str | None, Field(max_length=64, description="Default calendar id (20 chars).")
        ] = None,
        tools_wanted: Annotated[
            list[Annotated[str, Field(max_length=64)]] | None,
            Field(
                max_length=30,
                description="Tools you will use (default: all); decides the scopes.",
                examples=[["create_appointment", "search_contacts"]],
            ),
        ] = None,
        format: Annotated[
            Literal["env", "toml"], Field(description=".env lines or a crm-mcp.toml table.")
        ] = "env",
        verify: Annotated[
            bool, Field(description="Try the credentials live (ping, calendars, custom fields).")
        ] = False,
        public_base_url: Annotated[
            str | None,
            Field(
                max_length=300,
                description="Public https URL of this server, for the webhook URL.",
                examples=["https://crm.example.com"],
            ),
        ] = None,
        base_url: Annotated[
            str | None,
            Field(
                max_length=300,
                description="API base URL (default GoHighLevel's; a loopback sandbox URL is allowed).",
            ),
        ] = None,
    ) -> ConfigResult:
        """A validated GoHighLevel config: .env/TOML text, OAuth scopes, webhook setup and rate limits."""
        tools = list(tools_wanted) if tools_wanted else sorted(TOOL_SCOPES)
        problems = validate_inputs(name, token, location_id, calendar_id, tools, public_base_url, base_url)
        if problems:
            raise ToolError("Invalid input:\n- " + "\n- ".join(problems))
        needs: dict[str, list[str]] = {}
        for tool in tools:
            for scope in TOOL_SCOPES[tool]:
                needs.setdefault(scope, []).append(tool)
        scopes = [ScopeNeed(scope=s, needed_by=sorted(set(t))) for s, t in sorted(needs.items())]
        result = ConfigResult(
            provider=provider,
            connection=name,
            format=format,
            config_text=render(format, name, token, location_id, calendar_id, base_url),
            token_masked=bool(token),
            scopes=scopes,
            scope_string=" ".join(s.scope for s in scopes),
            webhook_url=f"{public_base_url.rstrip('/')}/webhooks/gohighlevel/{name}"
            if public_base_url
            else None,
            webhook_events=WEBHOOK_EVENTS,
            rate_limits={
                "burst": "100 requests per 10 s per location (X-RateLimit-Max / -Remaining)",
                "daily": "200,000 requests per day per location (X-RateLimit-Daily-Remaining)",
                "handling": "crm-mcp waits for the window instead of failing; 429s are retried",
            },
        )
        if format == "env" and name != "gohighlevel":
            result.warnings.append(
                f"Env vars configure the connection named 'gohighlevel'; use format=toml to name it {name!r}."
            )
        if token:
            result.next_steps.append(
                "Replace the masked token with the full one (or keep it only in the env "
                "var CRM_MCP_GHL_TOKEN; crm-mcp.toml is a file others may read)."
            )
        if not location_id:
            result.warnings.append("location_id is missing: the connection cannot work without it.")
        if public_base_url:
            result.next_steps.append(f"Register {result.webhook_url} for events {', '.join(WEBHOOK_EVENTS)}.")
        else:
            result.next_steps.append("Pass public_base_url to get the webhook URL to register.")
        if verify:
            if not (token and location_id):
                raise ToolError("verify=true needs token and location_id.")
            result.checks = await verify_live(token, location_id, calendar_id, base_url or GHL_API)
            result.verified = all(c.ok for c in result.checks)
            if not result.verified:
                result.next_steps.insert(
                    0,
                    "Fix the failed checks: "
                    + "; ".join(f"{c.name}: {c.detail}" for c in result.checks if not c.ok),
                )
        return result

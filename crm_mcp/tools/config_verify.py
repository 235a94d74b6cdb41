"""generate_connector_config's verify step: the connection as configured on this server, checked.

It never takes credentials or a URL from the call: it asks the runtime for the connector of the
named connection, so it can only reach what the operator configured (no port probing, and the
model never handles a token). Each failed check says what to change and names the setting:
the provider's `CRM_MCP_<PREFIX>_*` variable, or the key of the connection's crm-mcp.toml table.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel

from crm_mcp.connectors.base import Calendars, CustomFields
from crm_mcp.connectors.registry import get_provider
from crm_mcp.errors import AuthError, ConfigurationError, CRMError, NotFoundError, RetryableError, redact

if TYPE_CHECKING:
    from crm_mcp.connectors.base import Connector
    from crm_mcp.connectors.provider import Provider
    from crm_mcp.runtime import Runtime
    from crm_mcp.settings import ConnectionSettings


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    latency_ms: float | None = None


class Verifier:
    """Checks one configured connection; every failure says what to fix and where."""

    def __init__(self, rt: Runtime, provider: Provider, conn: ConnectionSettings) -> None:
        self.rt, self.provider, self.conn = rt, provider, conn

    def env(self, key: str) -> str:
        var = f"CRM_MCP_{self.provider.env_prefix}_{key.upper()}"
        if self.conn.name == self.provider.name:
            return var
        return f"{var} (for this connection: `{key}` in [connections.{self.conn.name}] of crm-mcp.toml)"

    def tenant(self) -> str:
        """The account the connection is bound to, with its value and setting; "" when none."""
        spec = self.provider.spec() if self.provider.spec else None
        if spec is None or not spec.tenant_option:
            return ""
        value = self.conn.options.get(spec.tenant_option) or "(not set)"
        return f"{spec.tenant_label} {value} in {self.env(spec.tenant_option)}"

    def fix(self, exc: CRMError) -> str:
        """What failed and what to change, naming the setting."""
        title, tenant = self.provider.title, self.tenant()
        if isinstance(exc, AuthError):
            also = f", and that {tenant} is the one the token belongs to" if tenant else ""
            return (
                f"{title} refused the credentials: check the token in {self.env('token')} is valid and "
                f"has the scopes listed{also}; then restart crm-mcp."
            )
        if isinstance(exc, NotFoundError):
            where = f"check {tenant}" if tenant else f"check {self.env('base_url')}"
            return f"{title} answered not found: {where}."
        if isinstance(exc, RetryableError):
            return (
                f"{type(exc).__name__}: {exc}. {title} or the network is failing; retry later "
                f"(and check {self.env('base_url')})."
            )
        if isinstance(exc, ConfigurationError):
            prefix = f"CRM_MCP_{self.provider.env_prefix}_"
            return f"{exc.message} Fix it in {self.env('token')} or the other {prefix}* settings."
        return f"{type(exc).__name__}: {exc}"

    async def run(self) -> list[Check]:
        try:
            connector = self.rt.connector(self.conn.name)
        except CRMError as exc:
            return [Check(name="configuration", ok=False, detail=self.fix(exc))]
        started = time.perf_counter()
        try:
            await connector.ping()
        except CRMError as exc:
            return [Check(name="credentials", ok=False, detail=self.fix(exc))]
        ms = round((time.perf_counter() - started) * 1000, 1)
        checks = [Check(name="credentials", ok=True, detail="credentials accepted", latency_ms=ms)]
        steps: list[tuple[str, Callable[[Connector], Awaitable[Check]]]] = []
        if "calendars" in self.provider.capabilities:
            steps.append(("calendar", self.calendars))
        if "custom_fields" in self.provider.capabilities:
            steps.append(("custom_fields", self.fields))
        for step, check in steps:
            try:
                checks.append(await check(connector))
            except CRMError as exc:
                checks.append(Check(name=step, ok=False, detail=self.fix(exc)))
        return checks

    async def calendars(self, connector: Connector) -> Check:
        if not isinstance(connector, Calendars):
            return Check(name="calendar", ok=False, detail="this connector cannot list calendars")
        calendars = await connector.list_calendars()
        wanted = self.conn.options.get("calendar_id")
        if wanted and wanted not in {c.id for c in calendars}:
            names = ", ".join(f"{c.id} ({c.name})" for c in calendars[:10]) or "none"
            return Check(
                name="calendar",
                ok=False,
                detail=f"calendar {wanted} is not in this account: "
                f"set {self.env('calendar_id')} to one of: {names}",
            )
        if not wanted:
            return Check(
                name="calendar",
                ok=True,
                detail=f"{len(calendars)} calendar(s) readable; no default calendar: "
                f"set {self.env('calendar_id')} or pass calendar_id to create_appointment.",
            )
        return Check(name="calendar", ok=True, detail=f"calendar {wanted} found ({len(calendars)} readable)")

    async def fields(self, connector: Connector) -> Check:
        if not isinstance(connector, CustomFields):
            return Check(name="custom_fields", ok=False, detail="this connector cannot list fields")
        custom = await connector.list_custom_fields()
        keys = {f.key for f in custom} | {f.key for f in connector.contact_fields()}
        logical = self.provider.spec().logical_fields if self.provider.spec else {}
        missing = [f"{name} ({key})" for name, key in logical.items() if key not in keys]
        detail = f"{len(custom)} custom field(s) readable"
        if missing:
            detail += (
                f"; not found, so crm-mcp leaves them out: {', '.join(missing)}. "
                "Create contact fields with these keys to have them kept in sync."
            )
        return Check(name="custom_fields", ok=True, detail=detail)


async def verify_connection(rt: Runtime, provider: Provider, name: str) -> list[Check]:
    """Checks of the connection named `name` as this server has it configured, redacted."""
    checks = await _checks(rt, provider, name)
    return [c.model_copy(update={"detail": redact(c.detail)}) for c in checks]


async def _checks(rt: Runtime, provider: Provider, name: str) -> list[Check]:
    try:
        conn = rt.connection(name)
    except ConfigurationError as exc:
        how = (
            f"set the CRM_MCP_{provider.env_prefix}_* lines of config_text in .env"
            if name == provider.name
            else f"add the [connections.{name}] table of config_text (format=toml) to crm-mcp.toml"
        )
        detail = f"{exc.message} To configure it, {how}, set the secret as next_steps says, restart crm-mcp."
        return [Check(name="connection", ok=False, detail=detail)]
    if conn.provider != provider.name:
        other = get_provider(conn.provider).title
        return [
            Check(
                name="connection",
                ok=False,
                detail=f"connection {name!r} is a {other} connection, not {provider.title}: "
                f"pass provider={conn.provider!r}, or the name of a {provider.title} connection.",
            )
        ]
    return await Verifier(rt, provider, conn).run()

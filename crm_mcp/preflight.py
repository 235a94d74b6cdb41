"""Preflight: is each connection usable? Token accepted, tenant reachable, calendar there.

`serve` and `worker` check every connection when they start, in the background (the MCP
handshake never waits for it), and again every `CRM_MCP_PREFLIGHT_INTERVAL_SECONDS` (default
10 min); `crm-mcp connections test` runs it on demand and `check_integration_health` each time it
is called. Results go to the database (`state.connection_state`), where the write tools, health,
`crm-mcp status` and `crm-mcp connections list` of every process read them. A write to a
connection whose last check failed is still queued, but its result carries `warning`, saying what
is wrong and how to fix it (see `write_warning`).

Provider-neutral: the checks use only the capability protocols (`Connector.ping`,
`Calendars.list_calendars`), the error tree and what a provider declares (`ProviderSpec`
tenant option and label, settings prefix). `ping()` must reach the connection's tenant (its
location, portal, org) so that a wrong one fails: 401 means the token was refused; 403, 404 or a
ConfigurationError means the token works but the tenant is not reachable with it.

`crm_mcp.background` runs it on its schedule, next to republishing this process's breakers.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from crm_mcp.connectors.base import Calendars
from crm_mcp.connectors.registry import get_provider, providers
from crm_mcp.errors import AuthError, ConfigurationError, CRMError, NotFoundError, redact

if TYPE_CHECKING:
    from crm_mcp.runtime import Runtime
    from crm_mcp.settings import ConnectionSettings
    from crm_mcp.state.connection_state import StoredCheck

log = logging.getLogger(__name__)

CheckName = Literal["config", "reachable", "token", "tenant", "calendar", "api"]
CACHE_KEY = "preflight"
CACHE_MAX_AGE_S = 15.0  # other processes' checks (`connections test`) reach a server this fast


class Check(BaseModel):
    """One check of a connection. `ok` is None when it was skipped (an earlier one failed)."""

    name: CheckName
    label: str = Field(description="What was checked, e.g. 'location SbxLoc...'.")
    ok: bool | None
    detail: str = Field(description="What the CRM said, starting after the provider's name.")
    fix: str | None = None


class ConnectionCheck(BaseModel):
    connection: str
    provider: str
    ok: bool
    checked_at: datetime
    failing_since: datetime | None = None
    checks: list[Check]

    @property
    def failure(self) -> Check | None:
        return next((c for c in self.checks if c.ok is False), None)


# -- the checks ------------------------------------------------------------------------------


def setting_name(conn: ConnectionSettings, option: str) -> str:
    """Where the user sets `option` of this connection: its env var or its crm-mcp.toml key."""
    provider = get_provider(conn.provider)
    if conn.name == provider.name:  # the provider's default connection comes from env vars
        return f"CRM_MCP_{provider.env_prefix}_{option.upper()}"
    return f"`{option}` in [connections.{conn.name}] of crm-mcp.toml"


def _then_test(conn: ConnectionSettings) -> str:
    return (
        f"then restart crm-mcp (it checks again at start; `crm-mcp connections test {conn.name}` "
        "tries the new setting first)."
    )


def _token_fix(conn: ConnectionSettings) -> str:
    """What to renew: the credential the connection is configured with (token, JWT, refresh token)."""
    key = next((k for k in ("token", "jwt", "refresh_token") if conn.options.get(k)), "token")
    if key == "refresh_token":
        what = "reconnect the app and put its new refresh token"
    else:
        what = (
            f"create a new {'JWT' if key == 'jwt' else 'token'} (`crm-mcp config generate --provider "
            f"{conn.provider}` lists the scopes) and put it"
        )
    return f"{what} in {setting_name(conn, key)}, "


def _tenant(conn: ConnectionSettings) -> tuple[str, str, str | None, bool]:
    """(option, label, configured value, whether ping proves it) of the connection's tenant."""
    declared = get_provider(conn.provider)
    spec = declared.spec() if declared.spec is not None else None
    option = spec.tenant_option if spec else ""
    label = spec.tenant_label if spec else "account"
    value = conn.options.get(option) if option else None
    return option, label, str(value) if value else None, bool(spec and spec.ping_checks_tenant)


def _error(exc: CRMError) -> str:
    status = getattr(exc, "status", None)
    return redact(f"HTTP {status}: {exc.message}" if status else exc.message)


TOKEN_OK = Check(name="token", label="token", ok=True, detail="accepted the token")


async def _ping(conn: ConnectionSettings, connector: Any) -> tuple[list[Check], bool]:
    """Token and tenant checks from one authenticated call; (checks, whether the CRM let us in).

    401 (or a refused refresh): the token. 403, 404 or a ConfigurationError when the provider's
    ping goes into the tenant (`ProviderSpec.ping_checks_tenant`): the tenant. Anything else that
    fails: the CRM could not be reached (retryable), or it refused the call (settings).
    """
    option, label, value, proven = _tenant(conn)
    tenant = f"{label} {value}" if value else label
    bound = bool(value and proven)
    try:
        await connector.ping()
    except AuthError as exc:
        if exc.status == 403 and bound:  # authenticated, but not into that tenant
            fix = f"check {setting_name(conn, option)} (a {label} this token can reach), "
            return [
                TOKEN_OK,
                _fail(conn, "tenant", tenant, f"refused access to {tenant} ({_error(exc)})", fix),
            ], False
        checks = [_fail(conn, "token", "token", f"rejected its token ({_error(exc)})", _token_fix(conn))]
        if bound:
            checks.append(Check(name="tenant", label=tenant, ok=None, detail="not checked (token refused)"))
        return checks, False
    except (NotFoundError, ConfigurationError) as exc:
        if bound:
            fix = f"check {setting_name(conn, option)}, "
            return [
                TOKEN_OK,
                _fail(conn, "tenant", tenant, f"has no {tenant} for this token ({_error(exc)})", fix),
            ], False
        fix = "check the connection's base URL and options, "
        return [_fail(conn, "config", "settings", f"refused the check call ({_error(exc)})", fix)], False
    except CRMError as exc:
        detail = f"could not be reached ({type(exc).__name__}: {_error(exc)})"
        fix = (
            "check the network and the CRM's status page (and the connection's base URL); "
            "queued writes are retried until it answers."
        )
        return [Check(name="reachable", label="reachable", ok=False, detail=detail, fix=fix)], False
    checks = [TOKEN_OK]
    if bound:
        checks.append(Check(name="tenant", label=tenant, ok=True, detail="exists"))
    return checks, True


def _fail(conn: ConnectionSettings, name: CheckName, label: str, detail: str, fix: str) -> Check:
    """A failed check whose fix ends with how to apply it (restart; `connections test` first)."""
    return Check(name=name, label=label, ok=False, detail=detail, fix=fix + _then_test(conn))


async def _calendar(conn: ConnectionSettings, connector: Any) -> Check | None:
    wanted = conn.options.get("calendar_id")
    if not isinstance(connector, Calendars):
        return None
    if not wanted:
        return Check(
            name="calendar",
            label="calendar",
            ok=None,
            detail="no default calendar configured (create_appointment then needs calendar_id)",
            fix=f"set {setting_name(conn, 'calendar_id')} to book without naming one.",
        )
    try:
        calendars = await connector.list_calendars()
    except CRMError as exc:
        fix = "check that the token may read calendars, "
        return _fail(conn, "calendar", f"calendar {wanted}", f"could not list calendars ({_error(exc)})", fix)
    label = f"calendar {wanted}"
    if any(c.id == wanted for c in calendars):
        return Check(name="calendar", label=label, ok=True, detail="exists")
    known = ", ".join(f"{c.id} ({c.name})" for c in calendars[:5]) or "none"
    fix = f"set {setting_name(conn, 'calendar_id')} to one of its calendars, "
    return _fail(conn, "calendar", label, f"has no calendar {wanted} (calendars: {known})", fix)


async def check_connection(rt: Runtime, conn: ConnectionSettings) -> ConnectionCheck:
    """Run every check of one connection now (one authenticated call, one more for its calendar)."""

    def done(checks: list[Check]) -> ConnectionCheck:
        ok = all(c.ok is not False for c in checks)
        return ConnectionCheck(
            connection=conn.name, provider=conn.provider, ok=ok, checked_at=rt.clock(), checks=checks
        )

    if get_provider(conn.provider).connector is None:
        return done(
            [Check(name="api", label="api", ok=None, detail="receives webhooks only; nothing to call")]
        )
    try:
        connector = rt.connector(conn.name)
    except ConfigurationError as exc:
        return done([Check(name="config", label="settings", ok=False, detail=exc.message, fix=exc.hint)])
    checks, entered = await _ping(conn, connector)
    if entered and (calendar := await _calendar(conn, connector)) is not None:
        checks.append(calendar)
    return done(checks)


async def run_preflight(rt: Runtime, names: list[str] | None = None) -> list[ConnectionCheck]:
    """Check the connections (all, or `names`), store the results, and return them."""
    from crm_mcp.state.connection_state import save_check  # lazy: SQLAlchemy stays off start-up

    conns = [c for c in rt.connections() if names is None or c.name in names]
    results = [await check_connection(rt, c) for c in conns]
    db = await rt.database()
    async with db.begin_write() as session:
        for r in results:
            stored = await save_check(
                session,
                connection=r.connection,
                provider=r.provider,
                ok=r.ok,
                checks=[c.model_dump(mode="json") for c in r.checks],
                now=r.checked_at,
            )
            r.failing_since = stored.failing_since
    cached = dict(_cached(rt) or {})
    cached.update({r.connection: r for r in results})
    rt.read_cache[CACHE_KEY] = (time.monotonic(), 0, cached)
    for r in results:
        if (failed := r.failure) is not None:
            log.warning("connection %s: %s %s; fix: %s", r.connection, r.provider, failed.detail, failed.fix)
    return results


def no_connection_advice() -> tuple[str, str]:
    """(reason, recommendation) when no CRM connection is configured at all."""
    examples = [
        " and ".join(f"CRM_MCP_{p.env_prefix}_{o.upper()}" for o in p.setup.required_options)
        for p in providers()
        if p.connector is not None and p.setup is not None and p.setup.required_options
    ][:2]
    return (
        "No CRM connection is configured: tools that read or write a CRM cannot work.",
        f"Add one: set a provider's CRM_MCP_<PROVIDER>_* variables (e.g. {'; or '.join(examples)}; "
        "`crm-mcp config generate --provider NAME` prints them), or add a [connections.<name>] table "
        "to crm-mcp.toml, then restart. `crm-mcp serve --sandbox` tries everything with simulators.",
    )


# -- reading the last results ----------------------------------------------------------------


def _cached(rt: Runtime) -> dict[str, ConnectionCheck] | None:
    entry = rt.read_cache.get(CACHE_KEY)
    if entry is None or time.monotonic() - entry[0] > CACHE_MAX_AGE_S:
        return None
    return entry[2]  # type: ignore[no-any-return]


def from_stored(row: StoredCheck) -> ConnectionCheck:
    return ConnectionCheck(
        connection=row.connection,
        provider=row.provider,
        ok=row.ok,
        checked_at=row.checked_at,
        failing_since=row.failing_since,
        checks=[Check.model_validate(c) for c in row.checks],
    )


async def last_checks(rt: Runtime) -> dict[str, ConnectionCheck]:
    """The last stored check of each connection (whichever process ran it), briefly cached."""
    if (cached := _cached(rt)) is not None:
        return cached
    from crm_mcp.state.connection_state import load_checks

    db = await rt.database()
    async with db.sessions() as session:
        rows = await load_checks(session)
    checks = {name: from_stored(row) for name, row in rows.items()}
    rt.read_cache[CACHE_KEY] = (time.monotonic(), 0, checks)
    return checks


def describe_failure(check: ConnectionCheck) -> str | None:
    """One sentence: what the last check found wrong, when, and the fix; None when it passed."""
    failed = check.failure
    if failed is None:
        return None
    at = (check.failing_since or check.checked_at).strftime("%H:%M UTC")
    if failed.name == "reachable":
        return f"{check.provider} {failed.detail} at {at}; the worker retries until it answers."
    return f"{check.provider} {failed.detail} at {at}; deliveries will fail until it is fixed: {failed.fix}"


async def write_warning(rt: Runtime, connection: str) -> str | None:
    """The warning a write to `connection` carries when its last preflight failed, else None.

    e.g. "Queued, but gohighlevel rejected its token (HTTP 401: ...) at 10:02 UTC; deliveries will
    fail until it is fixed: create a new token ... then run `crm-mcp connections test gohighlevel`."
    """
    try:
        check = (await last_checks(rt)).get(connection)
    except Exception:  # the write is already queued: a status read must not turn it into an error
        log.warning("could not read the last check of connection %s", connection, exc_info=True)
        return None
    text = describe_failure(check) if check is not None else None
    return f"Queued, but {text}" if text else None

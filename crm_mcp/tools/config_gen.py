"""generate_connector_config: a validated connection config for any registered CRM, with what it
needs to work.

Most failed integrations fail at setup: a token without the right scopes, an account id pasted
from the wrong place, a webhook never registered. This tool turns non-secret options into the
exact .env lines or crm-mcp.toml table, lists the scopes the wanted tools need, the webhook URL
and events to register and the limits that apply, and (verify=true) checks the connection as it
is configured on this server, saying precisely what to fix. Everything provider-specific comes
from the provider's `SetupTemplate`, settings model and `ProviderSpec`.

Secrets never pass through here: the tool refuses a token or client secret in `options` and
prints a placeholder where one goes, so the model never has to handle a credential. For the
same reason verify never takes credentials or a URL from the call (no port probing).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast, get_args

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field, SecretStr, TypeAdapter, ValidationError

from crm_mcp.connectors.provider import Provider, SetupTemplate, render_config
from crm_mcp.connectors.registry import get_provider, providers
from crm_mcp.errors import ConfigurationError, redact
from crm_mcp.settings import check_base_url
from crm_mcp.tools._base import crm_tool
from crm_mcp.tools.args import MAX_SAFE_INT
from crm_mcp.tools.config_verify import Check, verify_connection

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from crm_mcp.runtime import Runtime

NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")

NameArg = Annotated[
    str | None,
    Field(max_length=64, description="Connection name (default: the provider's name)."),
]
OptionValue = (
    Annotated[str, Field(max_length=300)] | Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)] | bool
)
OptionsArg = Annotated[
    dict[Annotated[str, Field(max_length=64)], OptionValue] | None,
    Field(
        max_length=20,
        description="Non-secret options (location, calendar or portal id, base_url...); never a secret.",
        examples=[{"location_id": "<location-id>"}],
    ),
]
ToolsArg = Annotated[
    list[Annotated[str, Field(max_length=64)]] | None,
    Field(
        max_length=30,
        description="Tools you will use (default: all); decides the scopes.",
    ),
]
FormatArg = Annotated[Literal["env", "toml"], Field(description=".env lines or a crm-mcp.toml table.")]
UrlArg = Annotated[
    str | None,
    Field(
        max_length=300,
        description="Public https URL of this server, for the webhook URL.",
    ),
]
VerifyArg = Annotated[
    bool,
    Field(description="Check the connection `name` as configured on this server."),
]


class ScopeNeed(BaseModel):
    scope: str
    needed_by: list[str]


class ConfigResult(BaseModel):
    provider: str
    connection: str
    format: Literal["env", "toml"]
    config_text: str = Field(description="Paste into .env or crm-mcp.toml; secrets are <placeholders>.")
    scopes: list[ScopeNeed]
    scope_string: str = Field(description="Space-separated scopes to grant the token or app.")
    webhook_url: str | None = Field(None, description="Register it with the CRM (needs public_base_url).")
    webhook_events: list[str]
    limits: str
    verified: bool | None = None
    checks: list[Check] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    next_steps: list[str] = Field(default_factory=list)


# -- inputs ------------------------------------------------------------------------------------
def secret_keys(provider: Provider) -> frozenset[str]:
    """The provider's options whose values are secrets (declared, or typed SecretStr)."""
    fields = provider.settings.model_fields
    typed = {k for k, f in fields.items() if f.annotation is SecretStr or SecretStr in get_args(f.annotation)}
    return provider.settings.secret_options | typed


def option_text(value: str | int | bool) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def option_problem(provider: Provider, setup: SetupTemplate, key: str, value: str) -> str | None:
    """What is wrong with one non-secret option, in one sentence; None when it is fine."""
    field = provider.settings.model_fields[key]
    pattern = setup.option_patterns.get(key)
    if pattern and not re.fullmatch(pattern[0], value):
        return (
            f"options.{key}: a {provider.title} {key} looks like {pattern[1]}; "
            f"got {len(value)} character(s) that do not match."
        )
    if key in provider.settings.url_fields:
        try:
            check_base_url(value, setting=f"options.{key}")
        except ConfigurationError as exc:
            return exc.message
        return None
    try:
        TypeAdapter(field.annotation or str).validate_python(value)
    except ValidationError as exc:
        return f"options.{key}: {exc.errors()[0]['msg']}."
    try:  # the one rule for what may go into a config file (no quotes, no line breaks)
        render_config(provider, provider.name, {key: value}, "env")
    except ConfigurationError as exc:
        return f"options.{exc.message}"
    return None


def input_problems(
    provider: Provider,
    setup: SetupTemplate,
    name: str,
    options: Mapping[str, str],
    tools: list[str],
    public_base_url: str | None,
) -> list[str]:
    """Every problem at once, each naming the argument, what is wrong and what a good value looks like."""
    problems = []
    if not NAME.fullmatch(name):
        problems.append(
            f"name: lower-case letters, digits, '-' or '_', starting with a letter (e.g. {provider.name!r})."
        )
    fields, secrets = provider.settings.model_fields, secret_keys(provider)
    for key in sorted(k for k in options if k in secrets):
        problems.append(
            f"options.{key} is a secret, and secrets never go through this tool: leave it out and "
            f"set it yourself in CRM_MCP_{provider.env_prefix}_{key.upper()} "
            f"(or `{key}` in the crm-mcp.toml table)."
        )
    unknown = sorted(k for k in options if k not in fields)
    if unknown:
        valid = ", ".join(k for k in fields if k not in secrets)
        problems.append(f"options: {provider.title} takes no option {', '.join(unknown)}; valid: {valid}.")
    for key in (k for k in options if k in fields and k not in secrets):
        if problem := option_problem(provider, setup, key, options[key]):
            problems.append(problem)
    unknown_tools = sorted(set(tools) - set(setup.scopes))
    if unknown_tools:
        problems.append(
            f"tools_wanted: no {provider.title} scopes for {', '.join(unknown_tools[:5])}; "
            f"valid: {', '.join(sorted(setup.scopes))}."
        )
    if public_base_url is not None:
        try:
            check_base_url(public_base_url, setting="public_base_url")
        except ConfigurationError as exc:
            problems.append(exc.message)
    return problems


def scope_needs(setup: SetupTemplate, tools: list[str]) -> list[ScopeNeed]:
    needs: dict[str, set[str]] = {}
    for tool in tools:
        for scope in setup.scopes[tool]:
            needs.setdefault(scope, set()).add(tool)
    return [ScopeNeed(scope=s, needed_by=sorted(t)) for s, t in sorted(needs.items())]


# -- the config and what to do with it ---------------------------------------------------------
def secret_home(provider: Provider, name: str, key: str, fmt: str) -> str:
    """Where a secret option goes: the env var of the default connection, or the TOML key."""
    if fmt == "env":
        return f"CRM_MCP_{provider.env_prefix}_{key.upper()} (in .env or the server's environment)"
    return f"`{key}` in [connections.{name}] of crm-mcp.toml (keep that file private, mode 0600)"


def build_result(
    provider: Provider,
    setup: SetupTemplate,
    name: str,
    options: Mapping[str, str],
    tools: list[str],
    fmt: Literal["env", "toml"],
    public_base_url: str | None,
) -> ConfigResult:
    scopes = scope_needs(setup, tools)
    webhook_url = (
        f"{public_base_url.rstrip('/')}/webhooks/{provider.name}/{name}" if public_base_url else None
    )
    result = ConfigResult(
        provider=provider.name,
        connection=name,
        format=fmt,
        config_text=render_config(provider, name, options, fmt),
        scopes=scopes,
        scope_string=" ".join(s.scope for s in scopes),
        webhook_url=webhook_url,
        webhook_events=list(setup.webhook_events),
        limits=setup.limits,
    )
    if fmt == "env" and name != provider.name:
        result.warnings.append(
            f"Env vars configure the connection named {provider.name!r}; use format=toml to name it {name!r}."
        )
    secrets = secret_keys(provider)
    for key in setup.required_options:
        if key in secrets:
            result.next_steps.append(
                f"Put the {key.replace('_', ' ')} yourself (never in this chat) in "
                f"{secret_home(provider, name, key, fmt)}, replacing its <placeholder>."
            )
        elif key not in options:
            example = setup.option_patterns.get(key, ("", ""))[1]
            result.warnings.append(
                f"{key} is missing: the connection cannot work without it"
                + (f" (e.g. {example})." if example else ".")
            )
    if setup.auth_note:
        result.next_steps.append(f"Credentials: {setup.auth_note}")
    if result.scope_string:
        result.next_steps.append(f"Grant these scopes: {result.scope_string}")
    if webhook_url:
        result.next_steps.append(f"Register {webhook_url} for events {', '.join(setup.webhook_events)}.")
    elif setup.webhook_events:
        result.next_steps.append("Pass public_base_url to get the webhook URL to register.")
    return result


def option_mismatches(rt: Runtime, name: str, options: Mapping[str, str]) -> list[str]:
    """Options that differ from what the configured connection `name` has (non-secret only)."""
    try:
        configured = rt.connection(name).options
    except ConfigurationError:
        return []
    return [
        redact(f"options.{k} differs from the configured connection's {k} ({configured[k]}): ")
        + "verify checked the configured value."
        for k, v in options.items()
        if configured.get(k) not in (None, "") and option_text(configured[k]) != v
    ]


# -- the tool ----------------------------------------------------------------------------------
async def generate(
    rt: Runtime,
    provider: Provider,
    name: str | None,
    options: Mapping[str, str | int | bool] | None,
    tools_wanted: list[str] | None,
    fmt: Literal["env", "toml"],
    public_base_url: str | None,
    verify: bool,
) -> ConfigResult:
    """The config for `provider`, validated; with `verify`, the configured connection checked live.

    Raises:
        ToolError: invalid input (every problem listed at once).
    """
    setup = provider.setup
    if setup is None:
        raise ToolError(f"{provider.title} has no setup template; nothing to generate.")
    name = name or provider.name
    opts = {k: option_text(v) for k, v in (options or {}).items()}
    tools = list(dict.fromkeys(tools_wanted)) if tools_wanted else sorted(setup.scopes)
    problems = input_problems(provider, setup, name, opts, tools, public_base_url)
    if problems:
        raise ToolError(redact("Invalid input:\n- " + "\n- ".join(problems)))
    result = build_result(provider, setup, name, opts, tools, fmt, public_base_url)
    if verify:
        result.checks = await verify_connection(rt, provider, name)
        result.verified = all(c.ok for c in result.checks)
        result.warnings += option_mismatches(rt, name, opts)
        if not result.verified:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in result.checks if not c.ok)
            result.next_steps.insert(0, f"Fix the failed checks: {failed}")
            result.next_steps.append("Then restart crm-mcp and call this tool again with verify=true.")
    else:
        result.next_steps.append(
            "Restart crm-mcp, then call this tool with verify=true to check the connection."
        )
    return result


def setup_provider_names() -> list[str]:
    return [p.name for p in providers() if p.setup is not None]


def default_provider(rt: Runtime, names: list[str]) -> str | None:
    """The provider of the only configured connection that has a setup template, if there is one."""
    try:
        conns = [c for c in rt.connections() if c.provider in names]
    except ConfigurationError:  # a broken crm-mcp.toml must not stop the server from starting
        return None
    return conns[0].provider if len(conns) == 1 else None


def with_provider_choices(fn: Callable[..., Any], names: list[str], default: str | None) -> None:
    """Publish `provider` as a Literal of the registered names (known only at registration)."""
    sig = inspect.signature(fn, eval_str=True)
    choice: Any = cast(Any, Literal)[tuple(names)] if names else str
    described = "CRM provider." if default else "Required: no single connection to default to."
    param = sig.parameters["provider"].replace(
        annotation=Annotated[choice, Field(description=described)],
        default=default if default else inspect.Parameter.empty,
    )
    fn.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[param, *(p for p in sig.parameters.values() if p.name != "provider")]
    )


def register(server: MCPServer[Any], rt: Runtime) -> None:
    names = setup_provider_names()

    async def generate_connector_config(
        provider: str,
        name: NameArg = None,
        options: OptionsArg = None,
        tools_wanted: ToolsArg = None,
        format: FormatArg = "env",
        public_base_url: UrlArg = None,
        verify: VerifyArg = False,
    ) -> ConfigResult:
        """A validated connection config for a CRM (.env or TOML, secrets as placeholders) with its
        scopes, webhook URL and limits; verify=true checks the connection as configured here."""
        return await generate(
            rt, get_provider(provider), name, options, tools_wanted, format, public_base_url, verify
        )

    with_provider_choices(generate_connector_config, names, default_provider(rt, names))
    crm_tool(
        server,
        title="Generate a connection config",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=True,
    )(generate_connector_config)

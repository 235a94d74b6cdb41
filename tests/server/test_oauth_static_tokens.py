"""Static bearer tokens for simple deployments (docs/oauth.md), over real HTTP against
`crm-mcp serve --transport http` in a subprocess: several accepted at once (rotation), each at
least 32 characters (an empty or short one refuses to start, with one line saying why), each
speaking for a named principal with scopes; and together with OAuth access tokens.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.server.test_http_security import initialize
from tests.server.test_oauth_rs import PRM_PATH, mcp_call
from tests.server.test_transports import clean_env, free_port, serving
from tests.support.authserver import AuthServer

pytestmark = pytest.mark.anyio

OLD = "old-token-0123456789-abcdefghijklmnop"
NEW = "new-token-0123456789-abcdefghijklmnop"
LEGACY = "legacy-token-0123456789-abcdefghijkl"


async def test_two_static_tokens_both_work_for_rotation(tmp_path: Path) -> None:
    """Rotation without downtime: the old and the new token are both accepted (as is
    CRM_MCP_HTTP_TOKEN beside them), each through a real MCP client; anything else is 401. With
    static tokens only there is no authorization server, so no OAuth metadata is advertised."""
    env = clean_env(tmp_path)
    env.update({"CRM_MCP_HTTP_TOKENS": f"ops={OLD},ops={NEW}", "CRM_MCP_HTTP_TOKEN": LEGACY})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(["--transport", "http", "--no-worker"], env, port):
        async with httpx2.AsyncClient(timeout=10) as http:
            for token in (OLD, NEW, LEGACY):
                assert (await initialize(http, url, authorization=f"Bearer {token}")).status_code == 200
            for wrong in (OLD[:-1], NEW + "x", "Bearer", OLD.upper()):
                assert (await initialize(http, url, authorization=f"Bearer {wrong}")).status_code == 401
            bare = await initialize(http, url)
            assert bare.status_code == 401
            assert "resource_metadata" not in bare.headers["www-authenticate"]
            assert (await http.get(url + PRM_PATH)).status_code == 404
            assert (await http.get(url + "/.well-known/oauth-authorization-server")).status_code == 404
        for token in (OLD, NEW):
            result = await mcp_call(url, token, "get_sync_status", {})
            assert not result.is_error, result.content


def _serve_fails(tmp_path: Path, env_update: dict[str, str], host: str = "127.0.0.1") -> str:
    env = clean_env(tmp_path)
    env.update(env_update)
    argv = [sys.executable, "-m", "crm_mcp", "serve", "--transport", "http", "--host", host]
    done = subprocess.run(
        [*argv, "--port", str(free_port()), "--no-worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "host", "says"),
    [
        ({"CRM_MCP_HTTP_TOKEN": ""}, "0.0.0.0", "CRM_MCP_HTTP_TOKEN is empty"),
        ({"CRM_MCP_HTTP_TOKEN": "   "}, "0.0.0.0", "CRM_MCP_HTTP_TOKEN is empty"),
        ({"CRM_MCP_HTTP_TOKEN": "short-token"}, "127.0.0.1", "11 characters long"),
        ({"CRM_MCP_HTTP_TOKENS": f"ops={OLD},ci="}, "127.0.0.1", "CRM_MCP_HTTP_TOKENS (entry 'ci') is empty"),
        ({"CRM_MCP_HTTP_TOKENS": f"ops={OLD},ci=short"}, "127.0.0.1", "(entry 'ci') is 5 characters long"),
        ({"CRM_MCP_HTTP_TOKENS": f"a={OLD},b={OLD}"}, "127.0.0.1", "configured twice"),
        ({}, "0.0.0.0", "needs CRM_MCP_HTTP_TOKEN"),
    ],
)
def test_an_empty_or_short_static_token_refuses_to_start(
    tmp_path: Path, env: dict[str, str], host: str, says: str
) -> None:
    assert says in _serve_fails(tmp_path, env, host)


def test_the_ways_to_write_static_tokens(tmp_path: Path) -> None:
    """name=token pairs, bare tokens (principal "default"), JSON with scopes, a TOML table."""
    from crm_mcp.settings import load_settings

    def entries(**kw: Any) -> list[tuple[str, str, list[str]]]:
        s = load_settings(_env_file=None, state_dir=tmp_path, **kw)
        return [(t.name, t.token.get_secret_value(), t.scopes) for t in s.http_tokens]

    both = ["crm:read", "crm:write"]
    assert entries(http_tokens=f"alice={OLD}, bob={NEW}") == [("alice", OLD, both), ("bob", NEW, both)]
    assert entries(http_tokens=f"{OLD}\n{NEW}") == [("default", OLD, both), ("default", NEW, both)]
    assert entries(http_tokens=f'[{{"name": "reader", "token": "{OLD}", "scopes": "crm:read"}}]') == [
        ("reader", OLD, ["crm:read"])
    ]
    assert entries(http_tokens="") == []
    toml = tmp_path / "crm-mcp.toml"
    toml.write_text(f'[http_tokens]\nci = "{OLD}"\nreader = {{ token = "{NEW}", scopes = ["crm:read"] }}\n')
    assert entries(config_file=toml) == [("ci", OLD, both), ("reader", NEW, ["crm:read"])]


async def test_static_tokens_name_their_principal_and_scopes(tmp_path: Path) -> None:
    """The contract tenant scoping builds on: AccessToken.client_id is the configured name
    ("default" for CRM_MCP_HTTP_TOKEN), AccessToken.scopes its configured scopes."""
    from crm_mcp.server.security import http_auth
    from crm_mcp.settings import load_settings

    settings = load_settings(
        _env_file=None,
        state_dir=tmp_path,
        http_token=LEGACY,
        http_tokens=f'[{{"name": "reader", "token": "{OLD}", "scopes": ["crm:read"]}}]',
    )
    auth = http_auth(settings, "http", "127.0.0.1")
    assert auth is not None
    verifier = auth.verifier()
    reader = await verifier.verify_token(OLD)
    assert reader is not None and (reader.client_id, reader.scopes) == ("reader", ["crm:read"])
    default = await verifier.verify_token(LEGACY)
    assert default is not None and (default.client_id, default.scopes) == (
        "default",
        ["crm:read", "crm:write"],
    )
    assert await verifier.verify_token(NEW) is None


async def test_static_tokens_and_oauth_together(tmp_path: Path) -> None:
    """A deployment moving to OAuth keeps its static token working meanwhile."""
    with AuthServer() as auth:
        env = clean_env(tmp_path)
        env.update({"CRM_MCP_OAUTH_ISSUER": auth.url, "CRM_MCP_HTTP_TOKENS": f"ci={OLD}"})
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with serving(["--transport", "http", "--no-worker"], env, port):
            async with httpx2.AsyncClient(timeout=10) as http:
                jwt_token = auth.mint(aud=f"{url}/mcp")
                for token in (OLD, jwt_token):
                    assert (await initialize(http, url, authorization=f"Bearer {token}")).status_code == 200
                assert (await initialize(http, url, authorization=f"Bearer {NEW}")).status_code == 401
                assert (await http.get(url + PRM_PATH)).json()["authorization_servers"] == [auth.url]


async def test_crm_credentials_never_reach_an_mcp_client(tmp_path: Path) -> None:
    """CRM tokens are never accepted from, nor passed to, MCP clients: no tool argument takes a
    credential, generate_connector_config refuses one in `options` without echoing it, and no
    tool output carries any configured CRM secret (every provider's sandbox connection)."""
    import json
    import re
    from contextlib import ExitStack

    from crm_mcp.server.run import start_sandboxes
    from crm_mcp.settings import load_settings
    from tests.harness import harness

    with ExitStack() as stack:
        settings = start_sandboxes(load_settings(_env_file=None, state_dir=tmp_path), stack)
        secrets = [s for c in settings.connections() for s in c.secret_values() if len(s) >= 8]
        assert secrets
        async with harness(settings) as h:
            credential_args = []
            for tool in (await h.client.list_tools()).tools:
                text = json.dumps(tool.input_schema)
                names = re.findall(r'"([A-Za-z_]+)": \{', text)
                credential_args += [
                    f"{tool.name}.{n}"
                    for n in names
                    if re.search(r"token|secret|password|api_?key|credential|bearer", n, re.I)
                ]
            assert credential_args == [], credential_args
            outputs = []
            for tool, args in [
                ("check_integration_health", {}),
                ("get_sync_status", {}),
                (
                    "generate_connector_config",
                    {"provider": "gohighlevel", "options": {"location_id": "loc-1"}},
                ),
            ]:
                result = await h.call(tool, args)
                outputs.append(json.dumps([c.model_dump() for c in result.content]))
                outputs.append(json.dumps(result.structured_content))
            refused = await h.call(
                "generate_connector_config", {"provider": "gohighlevel", "options": {"token": secrets[0]}}
            )
            assert refused.is_error
            refusal = json.dumps([c.model_dump() for c in refused.content])
            assert "secret" in refusal and secrets[0] not in refusal
            seen = "\n".join(outputs)
            assert not [s for s in secrets if s in seen]


def test_serve_help_names_the_auth_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "crm_mcp", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in (
        "CRM_MCP_HTTP_TOKENS",
        "CRM_MCP_OAUTH_ISSUER",
        "CRM_MCP_OAUTH_AUDIENCE",
        "CRM_MCP_PUBLIC_URL",
    ):
        assert name in out, name


def test_config_show_masks_static_tokens(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env["CRM_MCP_HTTP_TOKENS"] = f"ops={OLD},{NEW}"
    done = subprocess.run(
        [sys.executable, "-m", "crm_mcp", "config", "show", "--json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert '"ops"' in done.stdout and OLD not in done.stdout and NEW not in done.stdout

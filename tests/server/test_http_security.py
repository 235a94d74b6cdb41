"""Who may talk to `crm-mcp serve --transport http`, tried as an attacker would: httpx2 against
the real server in a subprocess.

- Every HTTP bind checks Host and Origin (DNS rebinding), not only the three loopback names the
  SDK protects by itself: an evil Host is 421, a foreign Origin 403, on any loopback address and
  beyond loopback (where CRM_MCP_ALLOWED_HOSTS names the public host).
- The token rule follows one notion of loopback: none needed on any loopback address unless
  configured; required beyond loopback; a configured token is required everywhere, and /readyz
  and /metrics require it too (401 without), while /healthz stays open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.server.test_transports import clean_env, free_port, serving

pytestmark = pytest.mark.anyio

TOKEN = "t0ken-for-tests-0123456789-abcdefghij"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "attacker", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


async def initialize(http: httpx2.AsyncClient, url: str, **headers: str) -> httpx2.Response:
    """POST an MCP initialize to /mcp with extra headers (host, origin, authorization)."""
    return await http.post(f"{url}/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})


async def test_another_loopback_address_checks_host_and_origin(tmp_path: Path) -> None:
    """127.0.0.2 is loopback like 127.0.0.1: no token needed, but an evil Host or Origin (a page
    whose DNS name was re-pointed at this address) is refused, as on 127.0.0.1."""
    port = free_port()
    url = f"http://127.0.0.2:{port}"
    with serving(
        ["--transport", "http", "--host", "127.0.0.2", "--no-worker"],
        clean_env(tmp_path),
        port,
        host="127.0.0.2",
    ):
        async with httpx2.AsyncClient(timeout=10) as http:
            ok = await initialize(http, url)
            assert ok.status_code == 200, ok.text
            evil_host = await initialize(http, url, host=f"evil.example:{port}")
            assert evil_host.status_code == 421
            evil_origin = await initialize(http, url, origin="http://evil.example")
            assert evil_origin.status_code == 403
            same_origin = await initialize(http, url, origin=f"http://127.0.0.2:{port}")
            assert same_origin.status_code == 200, same_origin.text


async def test_beyond_loopback_token_host_and_origin(tmp_path: Path) -> None:
    """0.0.0.0: the token is required on /mcp, /readyz and /metrics; Host must be loopback, the
    bound address or one of CRM_MCP_ALLOWED_HOSTS; Origin one of those; /healthz stays open."""
    env = clean_env(tmp_path)
    env.update({"CRM_MCP_HTTP_TOKEN": TOKEN, "CRM_MCP_ALLOWED_HOSTS": "crm.example.com"})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {TOKEN}"}
    with serving(["--transport", "http", "--host", "0.0.0.0", "--no-worker"], env, port):
        async with httpx2.AsyncClient(timeout=10) as http:
            assert (await initialize(http, url)).status_code == 401
            assert (await initialize(http, url, authorization="Bearer wrong-token")).status_code == 401
            assert (await initialize(http, url, **auth)).status_code == 200
            public = await initialize(
                http, url, host="crm.example.com", origin="https://crm.example.com", **auth
            )
            assert public.status_code == 200, public.text
            assert (await initialize(http, url, host=f"evil.example:{port}", **auth)).status_code == 421
            assert (await initialize(http, url, origin="https://evil.example", **auth)).status_code == 403
            for path in ("/metrics", "/readyz"):
                bare = await http.get(url + path)
                assert bare.status_code == 401 and "Bearer" in bare.headers["www-authenticate"], path
                assert bare.json()["error"] == "invalid_token"
                wrong = await http.get(url + path, headers={"authorization": "Bearer wrong-token"})
                assert wrong.status_code == 401, path
            metrics = await http.get(url + "/metrics", headers=auth)
            assert metrics.status_code == 200 and "crm_mcp_dead_letters" in metrics.text
            ready = await http.get(url + "/readyz", headers=auth)
            assert ready.status_code in (200, 503) and "checks" in ready.json()
            assert (await http.get(url + "/healthz")).json() == {"status": "ok"}


async def test_a_configured_token_is_required_on_loopback_too(tmp_path: Path) -> None:
    """A token the operator set is asked for even on 127.0.0.1 (a local reverse proxy or tunnel
    makes loopback reachable from anywhere), on /mcp and the ops endpoints alike."""
    env = clean_env(tmp_path)
    env["CRM_MCP_HTTP_TOKEN"] = TOKEN
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(["--transport", "http", "--no-worker"], env, port):
        async with httpx2.AsyncClient(timeout=10) as http:
            assert (await initialize(http, url)).status_code == 401
            assert (await http.get(url + "/metrics")).status_code == 401
            assert (await http.get(url + "/readyz")).status_code == 401
            headers: dict[str, Any] = {"authorization": f"Bearer {TOKEN}"}
            assert (await http.get(url + "/metrics", headers=headers)).status_code == 200
            assert (await initialize(http, url, **headers)).status_code == 200


async def test_status_polls_are_served_from_the_cached_snapshot(tmp_path: Path) -> None:
    """A burst of /metrics and /readyz requests costs the database one status computation, not
    one per request (the status is the cached snapshot, recomputed once when stale)."""
    from sqlalchemy import event

    from crm_mcp.runtime import Runtime
    from crm_mcp.server.app import build_server
    from crm_mcp.settings import load_settings
    from crm_mcp.views import current_status

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    rt = Runtime(load_settings(_env_file=None, state_dir=tmp_path, database_url=db_url))
    try:
        app = build_server(rt).streamable_http_app()
        db = await rt.database()
        statements: list[str] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        answers: list[int] = []

        async def get(http: httpx2.AsyncClient, path: str) -> None:
            answers.append((await http.get(path)).status_code)

        transport = httpx2.ASGITransport(app=app)
        async with (
            httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
            anyio.create_task_group() as tg,
        ):
            for path in ["/metrics", "/readyz"] * 25:
                tg.start_soon(get, http, path)
        assert answers.count(200) == 25 and answers.count(503) == 25  # /readyz: no worker here
        burst = len(statements)
        await current_status(rt)  # one computation, for comparison
        assert burst == len(statements) - burst > 0
    finally:
        await rt.aclose()


@pytest.mark.parametrize(
    ("host", "token_needed"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("127.255.255.254", False),
        ("localhost", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.168.1.5", True),
        ("crm.example.com", True),
    ],
)
def test_the_token_rule_and_the_host_check_share_one_notion_of_loopback(
    tmp_path: Path, host: str, token_needed: bool
) -> None:
    from crm_mcp.errors import ConfigurationError
    from crm_mcp.server.security import required_token, transport_security
    from crm_mcp.settings import load_settings

    bare = load_settings(_env_file=None, state_dir=tmp_path)
    if token_needed:
        with pytest.raises(ConfigurationError, match="CRM_MCP_HTTP_TOKEN"):
            required_token(bare, "http", host)
    else:
        assert required_token(bare, "http", host) is None
    assert (
        required_token(load_settings(_env_file=None, state_dir=tmp_path, http_token=TOKEN), "sse", host)
        == TOKEN
    )
    assert required_token(bare, "stdio", host) is None
    security = transport_security(host, ["crm.example.com"])
    assert security.enable_dns_rebinding_protection
    assert {"127.0.0.1:*", "localhost:*", "[::1]:*", "crm.example.com", "crm.example.com:*"} <= set(
        security.allowed_hosts
    )
    assert not any("evil" in h or h.startswith(("0.0.0.0", "[::]")) for h in security.allowed_hosts)

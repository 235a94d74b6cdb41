"""OAuth 2 with rotating refresh tokens against the GHL simulator's /oauth/token over loopback.

Token lifetimes run on injected clocks (the connector's wall clock and the simulator's token
clock are moved together); nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from crm_mcp.connectors.oauth import MemoryTokenStore, OAuth2RefreshAuth
from crm_mcp.connectors.registry import build_connector
from crm_mcp.errors import AuthError, ConfigurationError, StateError, UpstreamUnavailableError
from crm_mcp.providers.gohighlevel.connector import GoHighLevelConnector
from crm_mcp.providers.gohighlevel.sandbox import start_ghl_sandbox
from crm_mcp.providers.gohighlevel.sandbox.oauth import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID, GHLSandbox, GHLSandboxConfig
from crm_mcp.sandbox.runner import SandboxServer
from crm_mcp.state.credentials import CredentialCipher, EncryptedTokenStore
from crm_mcp.state.db import Database

pytestmark = pytest.mark.anyio
DAY = 86_399


class Clock:
    """The connector's wall clock; `advance` also moves the simulator's token clock."""

    def __init__(self, sim: GHLSandbox) -> None:
        self.now = 1_767_225_600.0
        self.sim = sim

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.sim.oauth.advance(seconds)


@pytest.fixture(scope="module")
def ghl() -> Iterator[tuple[GHLSandbox, SandboxServer]]:
    sandbox, server = start_ghl_sandbox(GHLSandboxConfig(burst_max=10_000))
    yield sandbox, server
    server.stop()


@pytest.fixture
def sim(ghl: tuple[GHLSandbox, SandboxServer]) -> GHLSandbox:
    sb = ghl[0]
    sb.reset()
    sb.oauth.revoke()
    sb.oauth.grants.clear()
    return sb


@pytest.fixture
def clock(sim: GHLSandbox) -> Clock:
    return Clock(sim)


@pytest.fixture
async def make(ghl: tuple[GHLSandbox, SandboxServer], clock: Clock) -> AsyncIterator[Any]:
    made: list[GoHighLevelConnector] = []

    def factory(**kw: Any) -> GoHighLevelConnector:
        kw.setdefault("client_id", SANDBOX_CLIENT_ID)
        kw.setdefault("client_secret", SANDBOX_CLIENT_SECRET)
        kw.setdefault("token_clock", clock)
        conn = GoHighLevelConnector("oauth", location_id=SANDBOX_LOCATION_ID, base_url=ghl[1].url, **kw)
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        await conn.aclose()


def auth_of(conn: GoHighLevelConnector) -> OAuth2RefreshAuth:
    auth = conn.client._auth
    assert isinstance(auth, OAuth2RefreshAuth)
    return auth


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'creds.db'}")
    await database.upgrade()
    yield database
    await database.dispose()


async def test_first_call_exchanges_the_refresh_token_and_persists_the_rotated_one(
    sim: GHLSandbox, make: Any
) -> None:
    seed = sim.oauth.install()
    store = MemoryTokenStore()
    conn = make(refresh_token=seed, token_store=store)
    await conn.ping()
    await conn.ping()
    assert sim.oauth.grants["refresh_token"] == 1  # one refresh, then the access token is reused
    saved = store.saved[("gohighlevel", "oauth")]
    assert saved["refresh_token"] != seed and saved["access_token"]
    assert sim.oauth.valid_refresh_tokens() == 1  # the seed died when it was used


async def test_access_token_not_used_before_the_rotated_pair_is_persisted(sim: GHLSandbox, make: Any) -> None:
    class FlakyStore(MemoryTokenStore):
        fail = True

        async def save_tokens(self, provider: str, connection: str, tokens: dict[str, Any]) -> None:
            if self.fail:
                raise OSError("disk full")
            await super().save_tokens(provider, connection, tokens)

    store = FlakyStore()
    conn = make(refresh_token=sim.oauth.install(), token_store=store)
    with pytest.raises(UpstreamUnavailableError, match="could not be saved") as info:
        await conn.ping()
    assert info.value.retryable
    assert sim.stats["total"] == 0  # the new access token never went out
    store.fail = False
    await conn.ping()  # saves the pending pair first, then uses it — no second refresh
    assert sim.oauth.grants["refresh_token"] == 1 and store.saves == 1
    assert sim.stats["total"] == 1


async def test_refresh_on_expiry_with_skew(sim: GHLSandbox, make: Any, clock: Clock) -> None:
    conn = make(refresh_token=sim.oauth.install())
    await conn.ping()
    clock.advance(DAY - 600)  # still valid for 10 min, outside the 5 min skew
    await conn.ping()
    assert sim.oauth.grants["refresh_token"] == 1
    clock.advance(400)  # 200 s left: inside the skew, refreshed before use
    await conn.ping()
    assert sim.oauth.grants["refresh_token"] == 2
    assert sim.stats["by_status"].get("401") is None  # never sent an expired token


async def test_single_flight_refresh_for_50_concurrent_requests_on_expiry(
    sim: GHLSandbox, make: Any, clock: Clock
) -> None:
    conn = make(refresh_token=sim.oauth.install())
    await conn.ping()
    clock.advance(DAY + 1)
    await asyncio.gather(*(conn.ping() for _ in range(50)))
    assert sim.oauth.grants["refresh_token"] == 2  # the first exchange + exactly one for the 50
    assert sim.stats["by_status"]["200"] == 51


async def test_single_flight_refresh_for_50_concurrent_401s(sim: GHLSandbox, make: Any) -> None:
    conn = make(refresh_token=sim.oauth.install())
    await conn.ping()
    sim.oauth.expire_access_tokens()  # server-side: our expiry clock does not know
    results = await asyncio.gather(*(conn.ping() for _ in range(50)), return_exceptions=True)
    assert [r for r in results if r is not None] == []
    assert sim.oauth.grants["refresh_token"] == 2
    assert sim.stats["by_status"]["401"] <= 50 and sim.stats["by_status"]["200"] == 51
    assert auth_of(conn).refreshes == 2


async def test_revoked_install_is_a_clear_auth_error(
    sim: GHLSandbox, make: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed = sim.oauth.install()
    conn = make(refresh_token=seed)
    await conn.ping()
    secrets = auth_of(conn).secrets
    sim.oauth.revoke()
    clock.advance(DAY + 1)
    with pytest.raises(AuthError) as info:
        await conn.ping()
    err = info.value
    assert not err.retryable and err.status == 401
    assert "refresh token was refused" in err.message and "reconnect" in err.message.lower()
    assert "CRM_MCP_GHL_REFRESH_TOKEN" in err.hint
    for secret in secrets:
        assert secret not in str(err) and secret not in repr(err) and secret not in caplog.text


async def test_wrong_client_secret_says_so(sim: GHLSandbox, make: Any) -> None:
    conn = make(refresh_token=sim.oauth.install(), client_secret="not-the-secret-at-all")
    with pytest.raises(AuthError, match="client id/secret were refused"):
        await conn.ping()


async def test_rotation_survives_a_restart(sim: GHLSandbox, make: Any, clock: Clock, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    seed = sim.oauth.install()

    async def run_process(advance: float) -> dict[str, Any]:
        db = Database(url)
        await db.upgrade()
        store = EncryptedTokenStore(db, CredentialCipher.from_state_dir(tmp_path / "state"))
        conn = make(refresh_token=seed, token_store=store)  # the env var still holds the dead seed
        try:
            clock.advance(advance)
            await conn.ping()
            return await store.load_tokens("gohighlevel", "oauth") or {}
        finally:
            await conn.aclose()
            await db.dispose()

    first = await run_process(0)
    second = await run_process(60)  # restart: stored access token still valid, no refresh
    assert sim.oauth.grants["refresh_token"] == 1 and second == first
    third = await run_process(DAY)  # restart after expiry: refreshed with the *rotated* token
    assert sim.oauth.grants["refresh_token"] == 2
    assert sim.oauth.grants["refresh_token:refused"] == 0
    assert third["refresh_token"] not in (seed, first["refresh_token"])
    blob = (tmp_path / "state.db").read_bytes()
    assert first["refresh_token"].encode() not in blob and third["access_token"].encode() not in blob


async def test_a_newly_configured_refresh_token_beats_the_stored_chain(sim: GHLSandbox, make: Any) -> None:
    store = MemoryTokenStore()
    conn = make(refresh_token=sim.oauth.install(), token_store=store)
    await conn.ping()
    sim.oauth.revoke()  # the user reinstalled the app ...
    reinstalled = make(refresh_token=sim.oauth.install(), token_store=store)  # ... and set the new token
    await reinstalled.ping()
    assert sim.oauth.grants["refresh_token"] == 2


async def test_registry_builds_an_oauth_connector(ghl: tuple[GHLSandbox, SandboxServer]) -> None:
    with pytest.raises(ConfigurationError, match="refresh_token"):
        build_connector("gohighlevel", "g", {"location_id": "x", "client_id": "a", "client_secret": "b"})
    conn = build_connector(
        "ghl",
        "g",
        {"location_id": SANDBOX_LOCATION_ID, "base_url": ghl[1].url, "client_id": SANDBOX_CLIENT_ID,
         "client_secret": SANDBOX_CLIENT_SECRET, "refresh_token": ghl[0].oauth.install()},
    )  # fmt: skip
    try:
        await conn.ping()
    finally:
        await conn.aclose()


async def test_token_request_is_form_encoded_without_version_header() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path == "/oauth/token":
            return httpx2.Response(
                200, json={"access_token": "at-1", "refresh_token": "rt-2", "expires_in": 86399}
            )
        return httpx2.Response(200, json={"location": {}})

    conn = GoHighLevelConnector(
        "mock", location_id="L", base_url="https://services.example.com", client_id="cid",
        client_secret="csecret-xyz", refresh_token="rt-1", transport=httpx2.MockTransport(handler),
    )  # fmt: skip
    await conn.ping()
    await conn.aclose()
    token_req, api_req = seen
    assert token_req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "version" not in token_req.headers and "authorization" not in token_req.headers
    body = token_req.content.decode()
    assert "grant_type=refresh_token" in body and "user_type=Location" in body
    assert api_req.headers["authorization"] == "Bearer at-1" and api_req.headers["version"]


async def test_credentials_at_rest(db: Database, tmp_path: Path) -> None:
    cipher = CredentialCipher.from_state_dir(tmp_path / "s")
    key_file = tmp_path / "s" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert CredentialCipher.from_state_dir(tmp_path / "s").key_id == cipher.key_id  # reused, not regenerated
    store = EncryptedTokenStore(db, cipher)
    await store.save_tokens("gohighlevel", "c1", {"refresh_token": "rt-secret-value"})
    assert await store.load_tokens("gohighlevel", "c1") == {"refresh_token": "rt-secret-value"}
    assert await store.load_tokens("gohighlevel", "other") is None
    other_key = EncryptedTokenStore(db, CredentialCipher.from_secret("a different operator secret"))
    with pytest.raises(ConfigurationError, match="encrypted with key"):
        await other_key.load_tokens("gohighlevel", "c1")
    blob = cipher.encrypt(b"x", b"ctx-a")
    with pytest.raises(StateError):
        cipher.decrypt(blob, b"ctx-b")  # bound to its connection
    with pytest.raises(ConfigurationError):
        CredentialCipher.from_secret("short")

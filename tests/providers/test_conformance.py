"""The conformance suite: every registered provider with a CRM API and a simulator, held to the
same cases against its own simulator over real loopback HTTP (DESIGN §4). A provider is done when
it passes; a third one is covered the moment it registers.

The suite names no provider: it reaches each simulator through its `SandboxHandle` (faults,
OAuth, signed webhooks, contact count) and reads each provider's quirks from its `ProviderSpec`
(logical custom fields, tenant option). Connectors run on a virtual clock whose `sleep` only moves
it, so backoff, Retry-After and rate-limit pauses cost no wall time; the one wall-clock wait is
the client timeout a hung request must hit (a fraction of a second).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_mcp.connectors.base import (
    Connector,
    Contact,
    Contacts,
    CustomFields,
    capabilities_of,
    require,
)
from crm_mcp.connectors.provider import Provider, SandboxHandle
from crm_mcp.connectors.registry import providers
from crm_mcp.errors import (
    AuthError,
    InvalidRequestError,
    NotFoundError,
    RetryableError,
    UpstreamUnavailableError,
)
from crm_mcp.state.db import Database
from crm_mcp.state.models import InboxEvent
from crm_mcp.sync.inbox import receive
from tests.providers.support import FakeTime, running_sandbox

pytestmark = pytest.mark.anyio

CONFORMING = [p for p in providers() if p.connector and p.sandbox]
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CONNECTION = "conformance"


@pytest.fixture(scope="module", params=CONFORMING, ids=lambda p: p.name)
def running(request: pytest.FixtureRequest) -> Iterator[tuple[Provider, SandboxHandle]]:
    yield from running_sandbox(request.param)


@pytest.fixture
def provider(running: tuple[Provider, SandboxHandle]) -> Provider:
    return running[0]


@pytest.fixture
def sandbox(running: tuple[Provider, SandboxHandle]) -> SandboxHandle:
    handle = running[1]
    handle.reset()
    return handle


@pytest.fixture
def fake() -> FakeTime:
    """The connectors' monotonic clock; `sleep` moves it (and records the wait) instead of waiting."""
    return FakeTime(yields=True)


@pytest.fixture
async def make(provider: Provider, sandbox: SandboxHandle, fake: FakeTime) -> AsyncIterator[Any]:
    """Build connectors to the simulator on the virtual clock; closed after the test."""
    made: list[Connector] = []

    def factory(options: dict[str, Any] | None = None, **overrides: Any) -> Connector:
        assert provider.connector is not None
        base = sandbox.connection_options() if options is None else options
        opts = {**base, "clock": fake.clock, "sleep": fake.sleep, "rng": random.Random(7), **overrides}
        conn = provider.connector(CONNECTION, opts)
        made.append(conn)
        return conn

    yield factory
    for conn in made:
        await conn.aclose()


@pytest.fixture
def contacts(provider: Provider, make: Any) -> Contacts:
    needs(provider, "contacts")
    return require(make(), Contacts)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inbox.db'}")
    await database.upgrade()
    yield database
    await database.dispose()


async def new_contact(conn: Contacts, email: str = "conformance@example.com") -> str:
    # a full name: CRMs that require a last name on new records (Zoho) create it in one call
    saved, _ = await conn.upsert_contact(Contact(email=email, first_name="Con", last_name="Formance"))
    assert saved.id
    return saved.id


def faults_spent(sandbox: SandboxHandle) -> bool:
    return sandbox.faults.describe()["faults"] == []


def needs(provider: Provider, capability: str) -> None:
    """Skip a case the provider's API cannot have (a phone system has no contacts, a provider
    that sends no webhooks has none to verify); test_conformance_call_logs.py holds the others."""
    if capability == "webhooks" and provider.webhooks is None:
        pytest.skip(f"{provider.name} sends no webhooks")
    if capability != "webhooks" and capability not in provider.capabilities:
        pytest.skip(f"{provider.name} has no {capability.replace('_', ' ')} capability")


# -- capabilities -----------------------------------------------------------------------------
async def test_declared_capabilities_are_what_the_connector_implements(provider: Provider, make: Any) -> None:
    assert capabilities_of(make()) == provider.capabilities


# -- auth -------------------------------------------------------------------------------------
async def test_a_bad_token_is_an_auth_error_that_never_shows_the_token(
    provider: Provider, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    needs(provider, "contacts")
    caplog.set_level(logging.DEBUG)
    canary = f"canary-token-{secrets.token_hex(12)}"
    conn = require(make(token=canary), Contacts)
    with pytest.raises(AuthError) as refused:
        await conn.search_contacts(None, 10, None)
    err = refused.value
    assert err.status == 401 and not err.retryable
    for text in (str(err), repr(err), err.message, err.hint, caplog.text):
        assert canary not in text


async def test_oauth_refreshes_once_for_concurrent_calls_and_once_more_after_expiry(
    sandbox: SandboxHandle, make: Any
) -> None:
    options = sandbox.oauth_options()
    if options is None:
        pytest.skip("this provider's simulator has no OAuth")
    conn = make(options)
    await asyncio.gather(*(conn.ping() for _ in range(20)))
    assert sandbox.token_grants() == 1  # one grant for 20 callers that all found no token
    await conn.ping()
    assert sandbox.token_grants() == 1  # the access token is reused
    sandbox.expire_tokens()  # server-side: the client's own expiry clock does not know
    results = await asyncio.gather(*(conn.ping() for _ in range(20)), return_exceptions=True)
    assert [r for r in results if r is not None] == []
    assert sandbox.token_grants() == 2  # refreshed once, however many calls saw the 401


# -- contacts ---------------------------------------------------------------------------------
async def test_create_get_update_and_upsert_is_idempotent(contacts: Contacts, sandbox: SandboxHandle) -> None:
    made, created = await contacts.upsert_contact(
        Contact(first_name="Ada", last_name="Lovelace", email="ada@example.com", phone="+1 555 010 0001")
    )
    assert created and made.id and made.email == "ada@example.com"
    got = await contacts.get_contact(made.id)
    assert (got.id, got.first_name, got.last_name, got.email) == (made.id, "Ada", "Lovelace", made.email)
    again, created_again = await contacts.upsert_contact(Contact(email="ada@example.com", last_name="King"))
    assert (again.id, created_again) == (made.id, False)
    same, created_third = await contacts.upsert_contact(Contact(email="ada@example.com", last_name="King"))
    assert (same.id, created_third) == (made.id, False)
    updated = await contacts.get_contact(made.id)
    assert (updated.first_name, updated.last_name) == ("Ada", "King")  # an update, not a replacement
    assert sandbox.contact_count() == 1


async def test_search_pages_to_the_end_without_repeating_a_cursor(
    contacts: Contacts, sandbox: SandboxHandle
) -> None:
    made = {await new_contact(contacts, f"page{i}@example.com") for i in range(7)}
    seen: list[str] = []
    cursors: list[str] = []
    cursor: str | None = None
    for _ in range(10):  # a paginator that loops would run past this bound
        page = await contacts.search_contacts(None, 3, cursor)
        assert len(page.contacts) <= 3
        seen += [str(c.id) for c in page.contacts]
        cursor = page.next_cursor
        if cursor is None:
            break
        assert cursor not in cursors, f"cursor {cursor!r} came back"
        cursors.append(cursor)
    assert cursor is None, "paging did not end"
    assert len(cursors) >= 2  # more than one page was really paged through
    assert sorted(seen) == sorted(made)  # every contact once: nothing skipped, nothing repeated
    assert sandbox.contact_count() == 7


# -- resilience -------------------------------------------------------------------------------
async def test_429_with_retry_after_is_waited_out(
    contacts: Contacts, sandbox: SandboxHandle, fake: FakeTime
) -> None:
    cid = await new_contact(contacts)
    sandbox.faults.set("rate_limit", retry_after=3, count=1)
    assert (await contacts.get_contact(cid)).id == cid
    assert faults_spent(sandbox) and sum(fake.sleeps) >= 3


async def test_429_without_retry_after_pauses_and_succeeds(
    contacts: Contacts, sandbox: SandboxHandle, fake: FakeTime
) -> None:
    cid = await new_contact(contacts)
    sandbox.faults.set("rate_limit", count=1)
    assert (await contacts.get_contact(cid)).id == cid
    assert faults_spent(sandbox) and sum(fake.sleeps) > 0


async def test_a_5xx_burst_is_retried(contacts: Contacts, sandbox: SandboxHandle) -> None:
    cid = await new_contact(contacts)
    sandbox.faults.set("error", status=503, count=2)
    assert (await contacts.get_contact(cid)).id == cid
    assert faults_spent(sandbox)


async def test_a_hung_request_times_out_and_is_retried(
    provider: Provider, make: Any, sandbox: SandboxHandle
) -> None:
    needs(provider, "contacts")
    conn = require(make(timeout_s=0.25), Contacts)
    cid = await new_contact(conn)
    sandbox.faults.set("timeout", delay_s=2.0, count=1)
    assert (await conn.get_contact(cid)).id == cid
    assert faults_spent(sandbox)


async def test_a_persistent_5xx_ends_as_a_retryable_error(contacts: Contacts, sandbox: SandboxHandle) -> None:
    cid = await new_contact(contacts)
    sandbox.faults.set("error", status=503)  # until cleared
    with pytest.raises(UpstreamUnavailableError) as failed:
        await contacts.get_contact(cid)
    assert isinstance(failed.value, RetryableError) and failed.value.retryable
    assert failed.value.status == 503


# -- error mapping ----------------------------------------------------------------------------
async def test_404_is_not_found(contacts: Contacts) -> None:
    with pytest.raises(NotFoundError) as missing:
        await contacts.get_contact("0" * 20)
    assert missing.value.status == 404 and not missing.value.retryable


async def test_4xx_validation_is_an_invalid_request(contacts: Contacts, sandbox: SandboxHandle) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await contacts.upsert_contact(Contact(email="not-an-email"))
    err = refused.value
    assert err.status is not None and 400 <= err.status < 500 and not err.retryable
    assert "email" in err.message.lower()
    assert sandbox.contact_count() == 0


# -- schema discovery -------------------------------------------------------------------------
async def test_custom_fields_are_discovered_and_logical_fields_resolve(provider: Provider, make: Any) -> None:
    needs(provider, "custom_fields")
    assert provider.spec is not None
    conn = make()
    fields = await require(conn, CustomFields).list_custom_fields()
    assert fields and all(f.custom for f in fields)
    schema = {f.key: f for f in [*fields, *require(conn, CustomFields).contact_fields()]}
    seeded = {name: schema[key] for name, key in provider.spec().logical_fields.items() if key in schema}
    assert "lead_score" in seeded, "the simulator must seed the lead_score field"
    values = {
        "lead_score": 42,
        "appointment_status": "confirmed",
        "next_appointment_date": "2026-12-01",
        "lead_status": "qualified",
    }
    contacts = require(conn, Contacts)
    cid = await new_contact(contacts)
    await contacts.set_contact_fields(cid, {name: values[name] for name in seeded})
    got = (await contacts.get_contact(cid)).custom_fields
    for name, field in seeded.items():
        assert got.get(field.id or field.key) not in (None, ""), f"{name} ({field.key}) was not written"
    assert float(got[seeded["lead_score"].id or seeded["lead_score"].key]) == 42


# -- webhooks ---------------------------------------------------------------------------------
async def stored_events(db: Database) -> int:
    async with db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(InboxEvent))).scalar_one())


async def deliver(
    db: Database, provider: Provider, sandbox: SandboxHandle, body: bytes, headers: dict[str, str], url: str
) -> Any:
    return await receive(
        db,
        provider=provider.name,
        connection=CONNECTION,
        options=sandbox.connection_options(),
        method="POST",
        url=url,
        headers=headers,
        body=body,
        now=NOW,
    )


def hook_url(provider: Provider) -> str:
    return f"https://crm.example.com/webhooks/{provider.name}/{CONNECTION}"


async def test_a_signed_webhook_is_stored_once(
    provider: Provider, sandbox: SandboxHandle, db: Database
) -> None:
    needs(provider, "webhooks")
    url = hook_url(provider)
    body, headers = sandbox.webhook_delivery(url, timestamp=NOW)
    first = await deliver(db, provider, sandbox, body, headers, url)
    assert (first.status, first.stored) == (200, 1), first.body
    again = await deliver(db, provider, sandbox, body, headers, url)
    assert again.status == 200 and again.body.get("duplicate") is True
    assert await stored_events(db) == 1


@pytest.mark.parametrize(("case", "status"), [("forged", 401), ("stale", 401), ("foreign", 403)])
async def test_refused_webhooks_are_never_stored(
    provider: Provider, sandbox: SandboxHandle, db: Database, case: str, status: int
) -> None:
    needs(provider, "webhooks")
    assert provider.spec is not None
    url = hook_url(provider)
    tenant = str(sandbox.connection_options()[provider.spec().tenant_option])
    if case == "stale":
        body, headers = sandbox.webhook_delivery(url, timestamp=NOW - timedelta(minutes=6))
    elif case == "foreign":  # validly signed: the provider signs every account's events alike
        body, headers = sandbox.webhook_delivery(url, tenant=f"9{tenant}", timestamp=NOW)
    else:
        body, headers = sandbox.webhook_delivery(url, timestamp=NOW)
        # a scheme that signs nothing but echoes a secret (Zoho's channel token) says what a
        # forgery looks like for it; signed schemes: still JSON, no longer what was signed
        forge = getattr(sandbox, "forge_webhook", None)
        body, headers = forge(body, headers) if forge else (body + b" ", headers)
    receipt = await deliver(db, provider, sandbox, body, headers, url)
    assert receipt.status == status, receipt.body
    assert receipt.body["error"] and receipt.stored == 0
    assert await stored_events(db) == 0

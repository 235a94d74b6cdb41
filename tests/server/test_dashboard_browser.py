"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against `crm-mcp serve`.

One operator's story, end to end over real HTTP: the CRM (the GoHighLevel sandbox) refuses a
booking, so its operation is dead-lettered; the page (behind an HTTP token) shows it; the operator
fixes the cause (the fault is cleared), clicks Retry and confirms; the worker inside `serve`
delivers it and the page says so without a reload. The layout is checked at 1280x800 and at a
phone's 390x844, and screenshots are saved as artifacts (tests/artifacts/dashboard/, or
$CRM_MCP_TEST_ARTIFACTS).

Locally the test skips when chromium or Playwright is missing; under CI=true it fails instead
(.ci/run installs chromium). Playwright's own browser download is never used.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import ON_CI
from tests.server.test_transports import clean_env, free_port, serving

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-test-token-0123456789-abcdefgh"
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000


def require_browser() -> None:
    """Skip locally without chromium or Playwright; fail on CI, where the browser test must run."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if not missing:
        return
    message = "dashboard browser test needs " + " and ".join(missing)
    if ON_CI:
        pytest.fail(f"{message} (CI must run it; .ci/run installs chromium)")
    pytest.skip(message)


@pytest.fixture
def chromium() -> None:
    """Ask for this before `served`, so a missing browser skips before a server starts."""
    require_browser()


def artifacts_dir() -> Path:
    root = os.environ.get("CRM_MCP_TEST_ARTIFACTS")
    path = Path(root) if root else Path(__file__).resolve().parent.parent / "artifacts"
    path = path / "dashboard"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def served(tmp_path: Path, ghl_sandbox: tuple[Any, Any]) -> Iterator[tuple[str, Any]]:
    """`crm-mcp serve --transport http` with a token, its one connection on the GHL sandbox."""
    from crm_mcp.providers.gohighlevel.sandbox.simulator import (
        SANDBOX_CALENDAR_ID,
        SANDBOX_LOCATION_ID,
        SANDBOX_TOKEN,
    )

    sim, sandbox = ghl_sandbox
    env = clean_env(tmp_path)
    env.update(
        {
            "CRM_MCP_HTTP_TOKEN": TOKEN,
            "CRM_MCP_GHL_TOKEN": SANDBOX_TOKEN,
            "CRM_MCP_GHL_LOCATION_ID": SANDBOX_LOCATION_ID,
            "CRM_MCP_GHL_CALENDAR_ID": SANDBOX_CALENDAR_ID,
            "CRM_MCP_GHL_BASE_URL": sandbox.url,
        }
    )
    port = free_port()
    with serving(["--transport", "http"], env, port):
        yield f"http://127.0.0.1:{port}", sim


async def book(url: str) -> str:
    """Create an appointment through MCP over HTTP (with the token); its sync operation id."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=auth, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), cache=None) as client,
    ):
        result = await client.call_tool(
            "create_appointment",
            {"first_name": "Dana", "email": "dana@example.com", "start_time": "2026-12-14T15:00:00Z"},
        )
        assert not result.is_error, result.content
        return str((result.structured_content or {})["sync_operation_id"])


@asynccontextmanager
async def chromium_page(profile: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=WIDE,
            color_scheme="light",
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            await context.close()


async def wait_for_preflight(url: str) -> None:
    """Let the server's start-up check of the connection finish before the CRM starts failing, so
    the page shows the failed booking and not a connection that looked down at start-up."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=auth, timeout=10) as http:
        for _ in range(100):
            state = (await http.get(f"{url}/dashboard/api/state")).json()
            if state["status"]["connectors"].get("gohighlevel", {}).get("preflight", False) is not None:
                return
            await anyio.sleep(0.1)


async def screenshot(page: Any, path: Path) -> None:
    await page.evaluate("window.scrollTo(0, 0)")  # a sticky header drawn mid-page otherwise
    await page.screenshot(path=str(path), full_page=True)


async def assert_fits(page: Any, width: int) -> None:
    """No horizontal scrolling, and the buttons an operator needs are inside the viewport."""
    widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == width, f"horizontal overflow at {width}px: {widths}"
    for box in [await b.bounding_box() for b in await page.locator("button:visible").all()]:
        assert box is None or (box["x"] >= 0 and box["x"] + box["width"] <= width), (width, box)


async def test_operator_retries_a_dead_letter_and_watches_it_deliver(
    chromium: None, served: tuple[str, Any]
) -> None:
    url, sim = served
    shots = artifacts_dir()

    await wait_for_preflight(url)
    sim.faults.set("error", status=400)  # the CRM refuses: delivery fails for good at once
    op_id = await book(url)

    with tempfile.TemporaryDirectory(prefix="crm-mcp-chromium-") as profile:
        async with chromium_page(Path(profile)) as page:
            await page.goto(f"{url}/dashboard")
            # the API needs the token: the page asks for it once
            await page.locator("#token-form").wait_for(state="visible")
            await page.fill("#token-input", TOKEN)
            await page.click("#token-form button[type=submit]")

            row = page.locator(f'tr[data-operation="{op_id}"]')
            await row.wait_for(state="visible")
            assert "InvalidRequestError" in await row.inner_text()
            card = page.locator('article[data-connection="gohighlevel"]')
            assert "breaker" in (await card.inner_text()).lower()
            assert await page.locator("#verdict").get_attribute("data-verdict") in {"degraded", "unhealthy"}
            await page.evaluate("window.__sameDocument = true")  # gone if the page reloads
            await assert_fits(page, WIDE["width"])
            await screenshot(page, shots / "wide-dead-letter.png")

            await page.set_viewport_size(PHONE)
            await page.wait_for_timeout(300)  # let the layout settle after the resize
            await assert_fits(page, PHONE["width"])
            await screenshot(page, shots / "phone-dead-letter.png")
            await page.set_viewport_size(WIDE)

            sim.faults.clear()  # the operator fixed the cause
            await row.locator("button[data-retry]").click()
            await page.locator("#confirm").wait_for(state="visible")  # the button asks first
            await page.click("#confirm-ok")

            retried = page.locator(f'#retried li[data-op="{op_id}"]')
            await page.locator(f'#retried li[data-op="{op_id}"][data-status="succeeded"]').wait_for()
            assert "delivered" in await retried.inner_text()
            await row.wait_for(state="detached")  # out of the dead-letter queue
            assert await page.evaluate("window.__sameDocument === true"), "the page reloaded"
            await page.locator("#dead-letters .empty").wait_for()
            delivered = page.locator('[data-tile="Delivered"] .value')
            await page.wait_for_function(
                "document.querySelector('[data-tile=\"Delivered\"] .value').textContent === '1'"
            )
            assert await delivered.inner_text() == "1"
            await assert_fits(page, WIDE["width"])
            await screenshot(page, shots / "wide-delivered.png")

            await page.emulate_media(color_scheme="dark")
            await page.set_viewport_size(PHONE)
            await page.wait_for_timeout(300)
            await assert_fits(page, PHONE["width"])
            await screenshot(page, shots / "phone-delivered-dark.png")

    # the page said delivered because the operation is: the same view sync://operations/{id} gives
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        op = (await http.get(f"{url}/dashboard/api/operations/{op_id}")).json()
    assert op["status"] == "succeeded" and op["crm_ids"], op
    assert len(op["dead_letters"]) == 1 and op["dead_letters"][0]["retry_count"] == 1

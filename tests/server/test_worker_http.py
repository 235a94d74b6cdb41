"""`crm-mcp worker --http-port N`: a worker-only deployment is observable on its own.

Over real HTTP: `serve --transport http --no-worker` takes a booking, a separate `crm-mcp worker
--http-port N` on the same database delivers it to the GoHighLevel sandbox. The worker's port
answers /healthz, /readyz, /metrics, /dashboard and /webhooks under the rules of `serve` (token,
Host/Origin), its dashboard shows the delivered operation, and its /metrics carries the delivery
histogram (the process that delivered), which the server's /metrics does not.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.test_dashboard_browser import TOKEN, book
from tests.server.test_transports import clean_env, free_port, serving, serving_command

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HISTOGRAM = "crm_mcp_delivery_duration_seconds"


@pytest.fixture
def deployment(tmp_path: Path, ghl_sandbox: tuple[Any, Any]) -> Iterator[tuple[str, str]]:
    """(server URL, worker URL): one database, the worker alone delivers."""
    from crm_mcp.providers.gohighlevel.sandbox.simulator import (
        SANDBOX_CALENDAR_ID,
        SANDBOX_LOCATION_ID,
        SANDBOX_TOKEN,
    )

    _sim, sandbox = ghl_sandbox
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
    server_port, worker_port = free_port(), free_port()
    worker = [sys.executable, "-m", "crm_mcp", "worker", "--http-port", str(worker_port)]
    with (
        serving(["--transport", "http", "--no-worker"], env, server_port),
        serving_command(worker, env, worker_port),
    ):
        yield f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{worker_port}"


def histogram_count(text: str, connection: str) -> float:
    """Delivery attempts counted in `text` (Prometheus exposition) for `connection`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == HISTOGRAM
        for sample in family.samples
        if sample.name == f"{HISTOGRAM}_count" and sample.labels.get("connection") == connection
    )


async def test_worker_serves_dashboard_metrics_and_probes(deployment: tuple[str, str]) -> None:
    server, worker = deployment
    async with httpx2.AsyncClient(timeout=10) as http:
        # the rules of `serve`: /healthz and the page shell open, the rest behind the token
        assert (await http.get(f"{worker}/healthz")).json() == {"status": "ok"}
        assert (await http.get(f"{worker}/dashboard")).status_code == 200
        for path in ("/readyz", "/metrics", "/dashboard/api/state"):
            bare = await http.get(worker + path)
            assert bare.status_code == 401 and "Bearer" in bare.headers["www-authenticate"], path
            wrong = await http.get(worker + path, headers={"Authorization": "Bearer wrong-token"})
            assert wrong.status_code == 401, path
        evil = await http.get(f"{worker}/dashboard/api/state", headers={**AUTH, "Host": "evil.example"})
        assert evil.status_code == 421
        forged = await http.post(
            f"{worker}/dashboard/api/retry",
            headers={**AUTH, "Content-Type": "application/json"},
            content=b'{"all": true, "dry_run": true}',
        )
        assert forged.status_code == 403  # no dashboard header: a cross-site form cannot retry
        # webhooks on the same port (they carry their own signatures; an unknown connection is 404)
        hook = await http.post(
            f"{worker}/webhooks/gohighlevel/nope", headers={"Content-Type": "application/json"}, content=b"{}"
        )
        assert hook.status_code == 404

        op_id = await book(server)  # the server queues it; only the worker delivers
        with anyio.fail_after(30):
            while True:
                state = (await http.get(f"{worker}/dashboard/api/state", headers=AUTH)).json()
                if state["status"]["totals"]["succeeded"] >= 1:
                    break
                await anyio.sleep(0.2)
        op = (await http.get(f"{worker}/dashboard/api/operations/{op_id}", headers=AUTH)).json()
        assert op["status"] == "succeeded" and op["crm_ids"]

        ready = await http.get(f"{worker}/readyz", headers=AUTH)
        assert ready.json()["checks"]["worker"] == "ok", ready.text

        worker_metrics = (await http.get(f"{worker}/metrics", headers=AUTH)).text
        server_metrics = (await http.get(f"{server}/metrics", headers=AUTH)).text
        assert histogram_count(worker_metrics, "gohighlevel") >= 1
        assert histogram_count(server_metrics, "gohighlevel") == 0  # it delivered nothing


def test_worker_http_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    argv = [
        sys.executable,
        "-m",
        "crm_mcp",
        "worker",
        "--http-port",
        str(free_port()),
        "--http-host",
        "0.0.0.0",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "CRM_MCP_HTTP_TOKEN" in done.stderr


async def test_worker_http_holds_webhooks_to_the_rate_serve_does(settings_factory: Any) -> None:
    from crm_mcp.runtime import Runtime
    from crm_mcp.server.worker_http import build_worker_app

    settings = settings_factory(
        "http://127.0.0.1:9", webhook_rate_limit_per_minute=1, webhook_rate_limit_burst=1
    )
    rt = Runtime(settings)
    try:
        app = build_worker_app(rt, host="127.0.0.1", auth=None)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            post = {"headers": {"Content-Type": "application/json"}, "content": b"{}"}
            first = await http.post("/webhooks/gohighlevel/nope", **post)
            assert first.status_code == 404  # counted, then refused by the route: no such connection
            second = await http.post("/webhooks/gohighlevel/nope", **post)
            assert second.status_code == 429, second.text
            assert int(second.headers["retry-after"]) >= 1
            other = await http.post("/webhooks/gohighlevel/other", **post)
            assert other.status_code == 404  # a bucket per connection in the path
    finally:
        await rt.aclose()

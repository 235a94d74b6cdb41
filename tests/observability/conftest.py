"""An in-memory span exporter behind the global tracer provider (which can be set once per process),
and one real `crm-mcp serve` run with traffic, whose /metrics and JSON logs two test modules read."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crm_mcp.sandbox.runner import SandboxServer


@pytest.fixture(scope="session")
def _exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    yield _exporter
    _exporter.clear()


# -- one real server run, shared by the metrics and logging tests -----------------------------------


@dataclass
class LiveRun:
    """What `crm-mcp serve --transport http --sandbox` did with real traffic, seen from outside."""

    metrics: str
    log_lines: list[str]
    operation_id: str
    db_path: Path
    exported: list[Any]  # the spans the server exported to a stub OTLP/HTTP collector


def _signer() -> Any:
    from crm_mcp.providers.gohighlevel.sandbox.signer import GHLWebhookSigner

    return GHLWebhookSigner(rsa_bits=2048)


async def _traffic(url: str, signer: Any) -> tuple[str, str]:
    """Tool calls (a CRM read on HubSpot, a booking, a refused call), the booking's delivery, webhooks
    (stored, duplicate, forged, wrong type, unknown connection); returns (operation id, /metrics)."""
    import httpx2
    from mcp import Client

    from crm_mcp.providers.gohighlevel.sandbox.signer import ghl_event_body
    from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_LOCATION_ID

    start = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT15:00:00Z")
    async with Client(f"{url}/mcp", cache=None, mode="legacy") as client:
        read = await client.call_tool("search_contacts", {"query": "nobody", "connection": "hubspot"})
        assert not read.is_error, read.content
        booked = await client.call_tool(
            "create_appointment", {"first_name": "Live", "email": "live@example.com", "start_time": start}
        )
        assert not booked.is_error, booked.content
        refused = await client.call_tool(
            "create_appointment", {"first_name": "NoContact", "start_time": start}
        )
        assert refused.is_error
        with anyio.fail_after(30):
            while True:
                status = await client.call_tool("get_sync_status", {"max_age_seconds": 0})
                if (status.structured_content or {}).get("totals", {}).get("succeeded"):
                    break
                await anyio.sleep(0.1)
    async with httpx2.AsyncClient(timeout=10) as http:
        hook = f"{url}/webhooks/gohighlevel/gohighlevel"
        body = ghl_event_body(
            {
                "type": "ContactCreate",
                "locationId": SANDBOX_LOCATION_ID,
                "id": "c-live",
                "email": "w@example.com",
            },
            timestamp=datetime.now(UTC),
            webhook_id="wh-live-1",
        )
        headers = signer.headers(body, ed25519_sig=False)
        assert (await http.post(hook, content=body, headers=headers)).status_code == 200
        assert (await http.post(hook, content=body, headers=headers)).json().get("duplicate") is True
        forged = {**headers, "x-wh-signature": "Zm9yZ2Vk"}
        assert (await http.post(hook, content=body + b" ", headers=forged)).status_code == 401
        plain = {"content-type": "text/plain"}
        assert (await http.post(hook, content=b"x", headers=plain)).status_code == 415
        nope = f"{url}/webhooks/gohighlevel/no-such-connection"
        assert (await http.post(nope, content=body, headers=headers)).status_code == 404
        metrics = await http.get(f"{url}/metrics")
        assert metrics.status_code == 200, metrics.text
    content = booked.structured_content or {}
    return str(content["sync_operation_id"]), metrics.text


@pytest.fixture(scope="session")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    from tests.server.test_transports import clean_env, free_port

    tmp = tmp_path_factory.mktemp("live")
    signer = _signer()
    env = clean_env(tmp)
    db_path, log_path = tmp / "live.db", tmp / "stderr.log"
    env.update(
        CRM_MCP_LOG_FORMAT="json",
        CRM_MCP_LOG_LEVEL="DEBUG",  # a line per CRM request (plain successes log at DEBUG)
        CRM_MCP_DATABASE_URL=f"sqlite+aiosqlite:///{db_path}",
        CRM_MCP_GHL_WEBHOOK_PUBLIC_KEY=signer.rsa_public_pem,
    )
    posts: list[bytes] = []
    collector = SandboxServer(_collector(posts)).start()
    env["CRM_MCP_OTEL_ENDPOINT"] = collector.url
    port = free_port()
    argv = [sys.executable, "-m", "crm_mcp", "serve", "--transport", "http", "--sandbox", "--port", str(port)]
    with log_path.open("wb") as stderr:  # a file, not a pipe: a chatty server never blocks on it
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _wait_for_port(port, proc)
            op_id, metrics = anyio.run(_traffic, f"http://127.0.0.1:{port}", signer)
        finally:
            proc.terminate()
            proc.wait(timeout=20)  # a clean stop flushes the spans still batched
            collector.stop()
    return LiveRun(metrics, log_path.read_text().splitlines(), op_id, db_path, _spans(posts))


def _collector(posts: list[bytes]) -> Starlette:
    async def traces(request: Request) -> Response:
        posts.append(await request.body())
        return Response(b"", media_type="application/x-protobuf")

    return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])


def _spans(posts: list[bytes]) -> list[Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = []
    for body in posts:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        out += [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    return out


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert proc.poll() is None, "the server exited"
            time.sleep(0.1)
    raise AssertionError("the server did not listen within 30 s")

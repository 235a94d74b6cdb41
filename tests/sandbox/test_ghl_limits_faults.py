"""Rate limits, latency, injected faults and the /_sandbox control plane of the GHL simulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx2
import pytest

from crm_mcp.providers.gohighlevel.sandbox.simulator import (
    SANDBOX_LOCATION_ID,
    SANDBOX_TOKEN,
    GHLSandbox,
    GHLSandboxConfig,
)
from crm_mcp.sandbox.runner import SandboxServer

HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKEN}", "Version": "2021-07-28"}
FIELDS = f"/locations/{SANDBOX_LOCATION_ID}/customFields"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def served(clock: FakeClock) -> Iterator[tuple[GHLSandbox, SandboxServer]]:
    sandbox = GHLSandbox(GHLSandboxConfig(seed=7), clock=clock)
    with SandboxServer(sandbox.app) as server:
        yield sandbox, server


@pytest.fixture
def sandbox(served: tuple[GHLSandbox, SandboxServer]) -> GHLSandbox:
    sb = served[0]
    sb.reset()
    sb.set_limits(burst_max=100, burst_interval_ms=10_000, daily_limit=200_000)
    sb.config.latency_s = 0.0
    return sb


@pytest.fixture
async def api(
    served: tuple[GHLSandbox, SandboxServer], sandbox: GHLSandbox
) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=served[1].url, headers=HEADERS, timeout=5) as client:
        yield client


@pytest.mark.anyio
async def test_burst_limit_429_then_window_slides(
    api: httpx2.AsyncClient, sandbox: GHLSandbox, clock: FakeClock
) -> None:
    sandbox.set_limits(burst_max=5, burst_interval_ms=1_000)
    remaining = []
    for _ in range(5):
        r = await api.get(FIELDS)
        assert r.status_code == 200
        remaining.append(int(r.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    r = await api.get(FIELDS)
    assert r.status_code == 429
    assert r.json() == {"statusCode": 429, "message": "Too Many Requests"}
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["X-RateLimit-Max"] == "5"
    assert r.headers["X-RateLimit-Interval-Milliseconds"] == "1000"
    assert "Retry-After" not in r.headers
    clock.now += 1.01
    assert (await api.get(FIELDS)).status_code == 200
    assert sandbox.stats["rate_limited"] == 1


@pytest.mark.anyio
async def test_daily_limit(api: httpx2.AsyncClient, sandbox: GHLSandbox, clock: FakeClock) -> None:
    sandbox.set_limits(daily_limit=3)
    clock.now = (int(clock.now // 86_400) + 1) * 86_400 + 10  # start of a fresh day
    daily = [(await api.get(FIELDS)).headers["X-RateLimit-Daily-Remaining"] for _ in range(3)]
    assert daily == ["2", "1", "0"]
    r = await api.get(FIELDS)
    assert r.status_code == 429 and r.headers["X-RateLimit-Limit-Daily"] == "3"
    clock.now += 86_400
    assert (await api.get(FIELDS)).status_code == 200


@pytest.mark.anyio
async def test_latency_is_per_request_and_overlaps(api: httpx2.AsyncClient, sandbox: GHLSandbox) -> None:
    sandbox.config.latency_s = 0.2
    statuses: list[int] = []

    async def call() -> None:
        statuses.append((await api.get(FIELDS)).status_code)

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
    elapsed = time.perf_counter() - began
    assert statuses == [200] * 10
    assert 0.2 <= elapsed < 1.0


@pytest.mark.anyio
async def test_latency_is_the_whole_service_time_and_the_write_lands_first(
    api: httpx2.AsyncClient, sandbox: GHLSandbox
) -> None:
    """The write is applied at once and the answer held until `latency_s` after the request
    arrived (the simulator's own work inside that time, not added to it): a client that gives up
    early has still made its write, as with a real CRM that is slow to answer."""
    sandbox.config.latency_s = 0.4
    body = {"locationId": SANDBOX_LOCATION_ID, "firstName": "Slow", "email": "slow@example.com"}
    with pytest.raises(httpx2.ReadTimeout):
        await api.post("/contacts/upsert", json=body, timeout=0.15)
    emails = [c.get("email") for c in sandbox.snapshot()["contacts"]]
    assert "slow@example.com" in emails  # applied, though the answer was not sent yet
    began = time.perf_counter()
    assert (await api.get(FIELDS)).status_code == 200
    assert time.perf_counter() - began >= 0.4


@pytest.mark.anyio
async def test_error_fault_counts_down(api: httpx2.AsyncClient, sandbox: GHLSandbox) -> None:
    sandbox.faults.set("error", status=502, count=2)
    codes = [(await api.get(FIELDS)).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    sandbox.faults.set("error")
    r = await api.get(FIELDS)
    assert r.status_code == 503 and r.json()["statusCode"] == 503
    assert "X-RateLimit-Remaining" in r.headers
    assert sandbox.stats["faults_injected"] == 3


@pytest.mark.anyio
async def test_rate_limit_fault_with_and_without_retry_after(
    api: httpx2.AsyncClient, sandbox: GHLSandbox
) -> None:
    sandbox.faults.set("rate_limit", count=1, retry_after=1.5)
    r = await api.get(FIELDS)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1.5"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    sandbox.faults.set("rate_limit", count=1)
    r = await api.get(FIELDS)
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert (await api.get(FIELDS)).status_code == 200


@pytest.mark.anyio
async def test_timeout_fault_trips_client_timeout(api: httpx2.AsyncClient, sandbox: GHLSandbox) -> None:
    sandbox.faults.set("timeout", delay_s=2, count=1)
    with pytest.raises(httpx2.TimeoutException):
        await api.get(FIELDS, timeout=0.2)


@pytest.mark.anyio
async def test_slow_fault_answers_late_and_still_applies_the_write(
    api: httpx2.AsyncClient, sandbox: GHLSandbox
) -> None:
    sandbox.faults.set("slow", delay_s=0.3, count=1)
    began = time.perf_counter()
    assert (await api.get(FIELDS)).status_code == 200
    assert time.perf_counter() - began >= 0.3
    # The ambiguous case: the client gives up, the CRM still performs the write.
    sandbox.faults.set("slow", delay_s=0.3, count=1, path=r"^/contacts/$")
    with pytest.raises(httpx2.TimeoutException):
        await api.post(
            "/contacts/", json={"locationId": SANDBOX_LOCATION_ID, "email": "late@x.io"}, timeout=0.1
        )
    await anyio.sleep(0.5)
    assert [c["email"] for c in sandbox.snapshot()["contacts"]] == ["late@x.io"]


@pytest.mark.anyio
async def test_malformed_and_reset_faults(api: httpx2.AsyncClient, sandbox: GHLSandbox) -> None:
    sandbox.faults.set("malformed", count=1)
    r = await api.get(FIELDS)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    sandbox.faults.set("reset", count=1)
    with pytest.raises(httpx2.TransportError):
        await api.get(FIELDS)
    assert (await api.get(FIELDS)).status_code == 200


@pytest.mark.anyio
async def test_path_and_probability_scoping(api: httpx2.AsyncClient, sandbox: GHLSandbox) -> None:
    sandbox.faults.set("error", path=r"/customFields$")
    assert (await api.get(FIELDS)).status_code == 503
    assert (await api.get(f"/locations/{SANDBOX_LOCATION_ID}")).status_code == 200
    sandbox.faults.clear()
    sandbox.faults.set("error", probability=0.5)
    codes = [(await api.get(FIELDS)).status_code for _ in range(30)]
    assert 0 < codes.count(503) < 30
    assert set(codes) == {200, 503}
    with pytest.raises(ValueError):
        sandbox.faults.set("explode")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_control_endpoints(api: httpx2.AsyncClient, sandbox: GHLSandbox) -> None:
    r = await api.post("/_sandbox/faults", json={"kind": "error", "status": 500, "count": 1})
    assert r.status_code == 200 and r.json()["faults"][0]["status"] == 500
    assert (await api.get("/_sandbox/faults")).json()["faults"][0]["kind"] == "error"
    assert (await api.get(FIELDS)).status_code == 500
    await api.post("/_sandbox/faults", json={"kind": "error"})
    assert (await api.delete("/_sandbox/faults")).json() == {"faults": []}
    assert (await api.post("/_sandbox/faults", json={"kind": "nope"})).status_code == 400
    r = await api.post("/_sandbox/limits", json={"burst_max": 1})
    assert r.json()["burst_max"] == 1
    await api.post("/contacts/", json={"locationId": SANDBOX_LOCATION_ID, "email": "c@x.io"})
    assert (await api.get(FIELDS)).status_code == 429
    state = (await api.get("/_sandbox/state")).json()
    assert [c["email"] for c in state["contacts"]] == ["c@x.io"]
    assert set(state) >= {"contacts", "appointments", "notes", "tasks", "stats"}
    stats = (await api.get("/_sandbox/stats")).json()
    assert stats["total"] == 3  # control calls are not counted
    assert stats["by_route"]["POST /contacts/"] == 1
    assert stats["by_status"] == {"500": 1, "201": 1, "429": 1}
    assert (await api.post("/_sandbox/reset")).json() == {"ok": True}
    assert (await api.get("/_sandbox/state")).json()["contacts"] == []
    assert sandbox.stats["total"] == 0


def test_stop_does_not_wait_for_hanging_requests() -> None:
    sandbox = GHLSandbox()
    server = SandboxServer(sandbox.app).start()
    sandbox.faults.set("timeout")  # 30 s
    with (
        httpx2.Client(base_url=server.url, headers=HEADERS) as client,
        pytest.raises(httpx2.TimeoutException),
    ):
        client.get(FIELDS, timeout=0.2)
    began = time.perf_counter()
    server.stop()
    assert time.perf_counter() - began < 3
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(server.url + FIELDS, timeout=1)

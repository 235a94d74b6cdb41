"""The call-log pipeline end to end: the RingCentral simulator's call history logged on a CRM
simulator's records through `sync_call_logs` (a real MCP client), the outbox and the worker.

What the issue asks of it, checked on what the CRM simulator holds afterwards: one log per call
session (never one per queue member), repeat callers on one lead, a follow-up task per missed
inbound call, owners from the extension map, nothing doubled by a second run, and a recording that
was still processing updating the same log once it is ready.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from crm_mcp.connectors.phones import to_e164
from crm_mcp.connectors.provider import SandboxHandle
from crm_mcp.connectors.registry import get_provider
from crm_mcp.settings import Settings, load_settings
from tests.harness import Harness, harness

pytestmark = pytest.mark.anyio

CALLS, DAYS = 40, 2


def _handle(name: str) -> Iterator[SandboxHandle]:
    provider = get_provider(name)
    assert provider.sandbox is not None
    handle = provider.sandbox(0)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def phones() -> Iterator[SandboxHandle]:
    yield from _handle("ringcentral")


@pytest.fixture(scope="module")
def hubspot() -> Iterator[SandboxHandle]:
    yield from _handle("hubspot")


@pytest.fixture(scope="module")
def ghl() -> Iterator[SandboxHandle]:
    yield from _handle("gohighlevel")


@pytest.fixture
def settings_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phones: SandboxHandle, hubspot: SandboxHandle
) -> Callable[..., Settings]:
    for key in list(os.environ):
        if key.startswith("CRM_MCP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    phones.reset()
    phones.sim.set_limits(light=1000, medium=1000, heavy=1000, auth=100)
    phones.sim.seed_calls(CALLS, DAYS, pending=2)
    hubspot.reset()
    hubspot.sim.set_limits(
        burst_max=1000, burst_interval_ms=10_000, daily_limit=250_000, search_per_second=100
    )

    def make(**extra: Any) -> Settings:
        options = {
            **{f"ringcentral_{k}": v for k, v in phones.connection_options().items()},
            **{f"hubspot_{k}": v for k, v in hubspot.connection_options().items()},
        }
        return load_settings(
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'test.db'}",
            state_dir=tmp_path / "state",
            sync_backoff_base_seconds=0.01,
            sync_backoff_cap_seconds=0.05,
            poll_interval_seconds=0.01,
            **{
                "calls_target": "hubspot",
                "calls_owners": {"101": "9001", "102": "9002"},
                "calls_fallback_owner": "9000",
                **options,
                **extra,
            },
        )

    return make


def _session(body: str) -> str:
    found = re.search(r"\[call-session:([^\]]+)\]", body)
    assert found, body
    return found.group(1)


async def _run(h: Harness, **args: Any) -> dict[str, Any]:
    since = (h.clock.now - timedelta(days=DAYS + 1)).isoformat()
    result = await h.ok("sync_call_logs", {"since": since, "wait_seconds": 0, **args})
    await h.settle()
    return result


async def test_every_call_session_is_logged_once_on_the_right_lead(
    settings_for: Callable[..., Settings], phones: SandboxHandle, hubspot: SandboxHandle
) -> None:
    outcomes = phones.session_results()  # type: ignore[attr-defined]
    async with harness(settings_for()) as h:
        first = await _run(h)
        assert first["calls_seen"] == len(outcomes) == CALLS
        assert first["queued"] == CALLS and first["failed"] == []

        crm = hubspot.sim.snapshot()
        calls = crm["calls"]
        sessions = Counter(_session(c["properties"]["hs_call_body"]) for c in calls)
        assert set(sessions) == set(outcomes)  # every session, and no leg of a queue call on its own
        assert max(sessions.values()) == 1  # exactly once

        numbers = {to_e164(c["properties"].get("phone")) for c in crm["contacts"]}
        assert len(numbers) == len(crm["contacts"])  # repeat callers share one lead

        missed_inbound = sum(
            1
            for c in calls
            if c["properties"]["hs_call_direction"] == "INBOUND"
            and c["properties"]["hs_call_status"] != "COMPLETED"
        )
        assert missed_inbound > 0
        assert len(crm["tasks"]) == missed_inbound  # one follow-up task per missed inbound session

        owners = Counter(c["properties"].get("hubspot_owner_id") for c in calls)
        assert owners["9001"] and owners["9000"]  # mapped extension, and the fallback
        results = Counter(c["properties"]["hs_call_status"] for c in calls)
        assert results == Counter(
            {"answered": "COMPLETED", "missed": "MISSED", "voicemail": "NO_ANSWER"}[r]
            for r in outcomes.values()
        )

        again = await _run(h)  # the same window again: nothing new, nothing written
        assert again["queued"] == 0 and again["already_logged"] == CALLS
        assert len(hubspot.sim.snapshot()["calls"]) == len(calls)

        status = await h.ok("get_sync_status", {"max_age_seconds": 0, "detail": "full"})
        assert status["details"]["call_pipeline"][0]["calls"] == {"logged": CALLS}


async def test_a_recording_that_was_processing_updates_the_same_log(
    settings_for: Callable[..., Settings], phones: SandboxHandle, hubspot: SandboxHandle
) -> None:
    async with harness(settings_for()) as h:
        await _run(h)
        before = hubspot.sim.snapshot()["calls"]
        pending = [c for c in before if "Recording: pending" in c["properties"]["hs_call_body"]]
        assert len(pending) == 2
        assert phones.release_recordings() == 2  # type: ignore[attr-defined]

        later = await _run(h)
        assert later["queued"] == 0

        after = {c["id"]: c for c in hubspot.sim.snapshot()["calls"]}
        assert len(after) == len(before)  # updated in place, never a second log
        for call in pending:
            body = after[call["id"]]["properties"]["hs_call_body"]
            assert "Recording: linked:" in body and "90 days" in body
            assert _session(body) == _session(call["properties"]["hs_call_body"])


async def test_a_dry_run_writes_nothing_and_says_what_it_would_do(
    settings_for: Callable[..., Settings], hubspot: SandboxHandle
) -> None:
    async with harness(settings_for()) as h:
        result = await _run(h, dry_run=True)
        assert result["dry_run"] and result["queued"] == 0
        assert len(result["plan"]) == CALLS
        assert {p["would"] for p in result["plan"]} == {"create a lead, then log"}
        assert hubspot.sim.snapshot()["calls"] == [] and hubspot.sim.contact_count() == 0


async def test_the_blocklist_and_the_never_rule_skip_calls(
    settings_for: Callable[..., Settings], phones: SandboxHandle, hubspot: SandboxHandle
) -> None:
    async with harness(settings_for(calls_blocklist=["101"], calls_create_leads="never")) as h:
        result = await _run(h)
        assert result["skipped_blocklist"] > 0
        assert result["queued"] == CALLS - result["skipped_blocklist"]
        assert hubspot.sim.contact_count() == 0 and hubspot.sim.snapshot()["calls"] == []
        status = await h.ok("get_sync_status", {"max_age_seconds": 0, "detail": "full"})
        assert status["details"]["call_pipeline"][0]["calls"] == {"skipped": result["queued"]}


async def test_health_shows_the_pipeline_with_both_sides_token_state(
    settings_for: Callable[..., Settings], phones: SandboxHandle
) -> None:
    async with harness(settings_for()) as h:
        await _run(h)
        report = await h.ok("check_integration_health")
        [pipeline] = report["call_pipeline"]
        assert pipeline["source"] == "ringcentral" and pipeline["target"] == "hubspot"
        assert pipeline["tokens_valid"] == {"ringcentral": True, "hubspot": True}
        assert pipeline["calls"] == {"logged": CALLS}
        phone_side = next(c for c in report["connections"] if c["connection"] == "ringcentral")
        assert not any("webhook" in r for r in phone_side["recommendations"])  # it sends none

    async with harness(settings_for(ringcentral_jwt="revoked")) as h:
        report = await h.ok("check_integration_health")
        [pipeline] = report["call_pipeline"]
        assert pipeline["tokens_valid"]["ringcentral"] is False
        assert report["verdict"] != "healthy"


async def test_a_crm_without_call_activities_gets_one_note_per_call_with_the_link(
    settings_for: Callable[..., Settings], phones: SandboxHandle, ghl: SandboxHandle
) -> None:
    """GoHighLevel has no call object and no attachments: each call is one note (found by its
    marker, never doubled), its recording a link that the note says expires."""
    ghl.reset()
    ghl_options = {f"ghl_{k}": v for k, v in ghl.connection_options().items()}
    async with harness(settings_for(calls_target="gohighlevel", **ghl_options)) as h:
        first = await _run(h)
        assert first["queued"] == CALLS and first["failed"] == []
        notes = ghl.sim.snapshot()["notes"]  # type: ignore[attr-defined]
        markers = Counter(re.search(r"\[crm-mcp:([^:]+):call\]", n["body"]).group(1) for n in notes)  # type: ignore[union-attr]
        assert set(markers) == set(phones.session_results()) and max(markers.values()) == 1  # type: ignore[attr-defined]
        linked = [n for n in notes if "Recording: linked:" in n["body"]]
        assert linked and all("90 days" in n["body"] for n in linked)
        again = await _run(h)
        assert again["queued"] == 0 and len(ghl.sim.snapshot()["notes"]) == len(notes)  # type: ignore[attr-defined]

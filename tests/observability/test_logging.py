"""Structured logs: JSON lines from a real `crm-mcp serve` run, one correlation id from the tool call
through its outbox operation to every CRM request of its delivery, the CRM's own request id, and
`crm-mcp dlq show` printing the id. Secrets stay redacted."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from crm_mcp.errors import register_secret
from crm_mcp.observability.context import bound
from crm_mcp.observability.logging import build_handler, resolve_format
from crm_mcp.state.models import DeadLetter, SyncOperation
from tests.harness import harness
from tests.observability.conftest import LiveRun


def records(run: LiveRun) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.log_lines]


def test_every_stderr_line_is_a_json_record(live_run: LiveRun) -> None:
    lines = records(live_run)  # json.loads fails on any other line, uvicorn's own included
    assert lines
    for line in lines:
        assert {"ts", "level", "logger", "message", "correlation_id"} <= line.keys()
        datetime.fromisoformat(line["ts"])
    assert any(line["logger"].startswith("uvicorn") for line in lines)


def test_one_correlation_id_from_tool_call_to_crm_requests(live_run: LiveRun) -> None:
    with sqlite3.connect(live_run.db_path) as db:
        (stored,) = db.execute(
            "SELECT correlation_id FROM sync_operations WHERE id = ?", (live_run.operation_id,)
        ).fetchone()
    assert stored and len(stored) == 16
    requests = [r for r in records(live_run) if r["logger"] == "crm_mcp.requests"]
    delivery = [r for r in requests if r.get("operation_id") == live_run.operation_id]
    assert len(delivery) >= 2  # contact upsert, appointment, note, task
    for r in delivery:
        assert r["correlation_id"] == stored
        assert r["connection"] == "gohighlevel" and r["action"] == "appointment.create"
        assert r["provider"] == "gohighlevel" and r["status"] in (200, 201)
        assert r["operation"].split(" ")[0] in {"GET", "POST", "PUT"} and "retries" in r
    # a read inside a tool call: the call's own id, and the CRM's request id from its headers
    (read,) = [r for r in requests if r.get("tool") == "search_contacts"]
    assert read["provider"] == "hubspot" and read["crm_request_id"]
    assert read["correlation_id"] and read["correlation_id"] != stored
    # every operation has an id to be followed by, even one queued outside a tool call
    assert all(r["correlation_id"] for r in requests if r.get("operation_id"))


def test_no_sandbox_secret_in_the_logs(live_run: LiveRun) -> None:
    from crm_mcp.providers.gohighlevel.sandbox.simulator import SANDBOX_TOKEN

    assert SANDBOX_TOKEN not in "\n".join(live_run.log_lines)


def test_json_formatter_fields_and_redaction() -> None:
    register_secret("canary-secret-1234567")
    stream = io.StringIO()
    logger = logging.getLogger("tests.observability.json")
    logger.handlers[:] = [build_handler("json", stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with bound("c0ffee0000000001", connection="gohighlevel", operation_id="op-1"):
            logger.warning("token canary-secret-1234567 leaked", extra={"crm_request_id": "req-9"})
            try:
                raise ValueError("Authorization: Bearer canary-secret-1234567")
            except ValueError:
                logger.exception("failed")
        logger.info("outside")
    finally:
        logger.handlers.clear()
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["correlation_id"] == "c0ffee0000000001" and first["level"] == "WARNING"
    assert first["connection"] == "gohighlevel" and first["operation_id"] == "op-1"
    assert first["crm_request_id"] == "req-9" and first["logger"] == "tests.observability.json"
    assert first["message"] == "token *** leaked"
    assert "canary-secret" not in stream.getvalue() and "ValueError" in second["exc"]
    assert third["correlation_id"] is None and "connection" not in third


def test_text_format_shows_the_correlation_id() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.observability.text")
    logger.handlers[:] = [build_handler("text", stream)]
    logger.propagate = False
    try:
        with bound("c0ffee0000000002"):
            logger.warning("hello")
    finally:
        logger.handlers.clear()
    assert stream.getvalue().rstrip().endswith("tests.observability.text: hello [c0ffee0000000002]")


def test_auto_format_is_text_on_a_terminal_else_json() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Tty()) == "json" and resolve_format("text", io.StringIO()) == "text"


@pytest.mark.anyio
async def test_dlq_show_prints_the_correlation_id(
    ghl_sandbox: Any, settings_factory: Any, tmp_path: Path
) -> None:
    sim, server = ghl_sandbox
    start = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT15:00:00Z")
    async with harness(settings_factory(server.url)) as h:
        booked = await h.ok(
            "create_appointment", {"first_name": "Dead", "email": "d@example.com", "start_time": start}
        )
        sim.faults.set("error", status=400)  # refused: a dead letter at once
        await h.deliver()
        db = await h.runtime.database()
        async with db.sessions() as session:
            op = await session.get(SyncOperation, booked["sync_operation_id"])
            assert op is not None and op.status == "dead" and op.correlation_id
            entry = (await session.execute(DeadLetter.__table__.select())).one()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update(
        CRM_MCP_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'test.db'}",
        CRM_MCP_STATE_DIR=str(tmp_path / "state"),
    )
    argv = [sys.executable, "-m", "crm_mcp", "dlq", "show", entry.id]
    shown = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    )
    printed = json.loads(shown.stdout)
    assert printed["correlation_id"] == op.correlation_id
    assert printed["operation_id"] == op.id


@pytest.mark.anyio
async def test_request_lines_at_info_only_when_retried_waited_or_failed(
    ghl_sandbox: Any, settings_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sim, server = ghl_sandbox
    start = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT15:00:00Z")
    caplog.set_level(logging.DEBUG, logger="crm_mcp.requests")
    async with harness(settings_factory(server.url)) as h:
        await h.ok("create_appointment", {"first_name": "Lvl", "email": "l@example.com", "start_time": start})
        sim.faults.set("rate_limit", count=1, retry_after=2)
        await h.deliver()
    lines = [r for r in caplog.records if r.name == "crm_mcp.requests"]
    assert len(lines) >= 3
    (info,) = [r for r in lines if r.levelno == logging.INFO]  # the 429, retried after its wait
    assert info.retries == 1 and info.rate_limit_wait_s >= 2  # type: ignore[attr-defined]
    assert all(r.levelno == logging.DEBUG for r in lines if r is not info)

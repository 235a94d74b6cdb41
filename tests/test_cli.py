"""The operator commands through the real `crm-mcp` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    base["CRM_MCP_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "crm_mcp", *args],
        env=base,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_db_upgrade_then_status_json(tmp_path: Path) -> None:
    assert run(tmp_path, "db", "upgrade").returncode == 0
    out = run(tmp_path, "status", "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    # no connection configured: the verdict says so (issue 12), but nothing is dead
    assert status["verdict"] in {"healthy", "degraded", "unhealthy"} and status["dead_letters"] == 0


def test_dlq_commands_on_an_empty_queue(tmp_path: Path) -> None:
    assert "empty" in run(tmp_path, "dlq", "list").stdout
    assert json.loads(run(tmp_path, "dlq", "list", "--json").stdout)["count"] == 0
    missing = run(tmp_path, "dlq", "show", "ffff")
    assert missing.returncode == 2 and "no dead-letter entry" in missing.stderr
    not_an_id = run(tmp_path, "dlq", "show", "nope")
    assert not_an_id.returncode == 2 and "is not a dead-letter entry" in not_an_id.stderr
    bare = run(tmp_path, "dlq", "retry")
    assert bare.returncode == 2 and "--all" in bare.stderr
    assert "would requeue 0" in run(tmp_path, "dlq", "retry", "--all", "--dry-run").stdout


def test_config_generate_prints_no_secret(tmp_path: Path) -> None:
    out = run(tmp_path, "config", "generate", "--location-id", "SbxLoc00000000000001", "--format", "toml")
    assert out.returncode == 0
    assert "[connections.gohighlevel]" in out.stdout and 'location_id = "SbxLoc00000000000001"' in out.stdout


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CRM_MCP_GHL_BASE_URL": "http://example.com"}, "https://"),
        ({"CRM_MCP_WORKER_CONCURRENCY": "0"}, "CRM_MCP_WORKER_CONCURRENCY"),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    out = run(tmp_path, "status", **env)
    assert out.returncode == 2
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_config_generate_refuses_injected_lines_and_names_the_provider_when_unclear(tmp_path: Path) -> None:
    out = run(tmp_path, "config", "generate", "--location-id", "Loc\nCRM_MCP_HTTP_TOKEN=x")
    assert (
        out.returncode == 2
        and "control characters" in out.stderr
        and "CRM_MCP_HTTP_TOKEN=x" not in out.stdout
    )
    unclear = run(tmp_path, "config", "generate", "--set", "base_url=https://crm.example.com")
    assert unclear.returncode == 2 and "--provider" in unclear.stderr
    hub = run(tmp_path, "config", "generate", "--portal-id", "62515")
    assert hub.returncode == 0 and "_PORTAL_ID=62515" in hub.stdout and "_TOKEN=<your token>" in hub.stdout


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_state_is_owner_only(tmp_path: Path) -> None:
    """The state directory is 0700 and the database (with its WAL files) 0600, on a first start
    and after an older install left them 0755 / 0644."""
    import stat

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env["CRM_MCP_STATE_DIR"] = str(state)
    argv = [sys.executable, "-m", "crm_mcp", "db", "upgrade"]
    for _ in ("first start", "after loosening"):
        out = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        files = sorted(state.glob("crm-mcp.db*"))
        assert files and mode(state) == 0o700
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        state.chmod(0o755)
        for f in files:
            f.chmod(0o644)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_the_credentials_key_and_its_directory_are_owner_only(tmp_path: Path) -> None:
    import stat

    from crm_mcp.state.credentials import KEY_FILE, CredentialCipher

    state = tmp_path / "fresh"
    CredentialCipher.from_state_dir(state)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600
    state.chmod(0o755)
    (state / KEY_FILE).chmod(0o644)
    CredentialCipher.from_state_dir(state)  # an older install is tightened on its next start
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600

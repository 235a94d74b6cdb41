"""Config discovery, `config show`, `claude-config` and one-line configuration errors, through
the real `crm-mcp` entry point (a subprocess with its own working directory and home)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOKEN = "pit-secret-token-value-1234"


def run(
    cwd: Path, *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    base.pop("XDG_CONFIG_HOME", None)
    base["HOME"] = str(home)
    base["XDG_STATE_HOME"] = str(home / "state")
    base["COLUMNS"] = "200"
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "crm_mcp", *args],
        env=base,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def toml(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def conn_table(name: str, location: str) -> str:
    return f'[connections.{name}]\nprovider = "gohighlevel"\ntoken = "{TOKEN}"\nlocation_id = "{location}"\n'


def show(cwd: Path, home: Path, env: dict[str, str] | None = None) -> dict:
    out = run(cwd, "config", "show", "--json", home=home, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    return cwd, home


def test_the_user_config_dir_is_found_from_any_working_directory(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    user = home / ".config" / "crm-mcp"
    toml(user / "crm-mcp.toml", "sync_max_attempts = 3\n" + conn_table("downtown", "Loc1"))
    (user / ".env").write_text("CRM_MCP_LOG_LEVEL=WARNING\n", encoding="utf-8")
    report = show(cwd, home)
    files = {(f["path"], f["status"]) for f in report["files"]}
    assert (str(user / "crm-mcp.toml"), "read") in files
    assert (str(user / ".env"), "read") in files
    assert (str(cwd / "crm-mcp.toml"), "absent") in files and (str(cwd / ".env"), "absent") in files
    settings = {s["name"]: s for s in report["settings"]}
    assert settings["sync_max_attempts"]["value"] == 3
    assert settings["sync_max_attempts"]["origin"] == str(user / "crm-mcp.toml")
    assert settings["log_level"]["value"] == "WARNING"
    (conn,) = report["connections"]
    assert conn["name"] == "downtown" and conn["options"]["token"] == "***"
    assert TOKEN not in json.dumps(report)


def test_xdg_config_home_is_honoured(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    cwd, home = dirs
    xdg = tmp_path / "xdg"
    toml(xdg / "crm-mcp" / "crm-mcp.toml", conn_table("xdgconn", "LocX"))
    report = show(cwd, home, {"XDG_CONFIG_HOME": str(xdg)})
    assert [c["name"] for c in report["connections"]] == ["xdgconn"]


def test_precedence_env_over_dotenv_over_crm_mcp_config_over_cwd_over_user(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    cwd, home = dirs
    user = home / ".config" / "crm-mcp"
    toml(user / "crm-mcp.toml", "sync_max_attempts = 3\nlease_seconds = 11\n" + conn_table("user", "L1"))
    toml(cwd / "crm-mcp.toml", "sync_max_attempts = 4\n" + conn_table("cwd", "L2"))
    # the working directory's TOML wins over the user's (one TOML file is read, never merged)
    report = show(cwd, home)
    status = {f["path"]: f["status"] for f in report["files"]}
    assert status[str(cwd / "crm-mcp.toml")] == "read" and status[str(user / "crm-mcp.toml")] == "skipped"
    settings = {s["name"]: s["value"] for s in report["settings"]}
    assert settings["sync_max_attempts"] == 4 and settings["lease_seconds"] == 60.0
    assert [c["name"] for c in report["connections"]] == ["cwd"]
    # $CRM_MCP_CONFIG wins over both
    explicit = toml(
        tmp_path / "elsewhere" / "mine.toml", "sync_max_attempts = 5\n" + conn_table("mine", "L3")
    )
    report = show(cwd, home, {"CRM_MCP_CONFIG": str(explicit)})
    assert {s["name"]: s["value"] for s in report["settings"]}["sync_max_attempts"] == 5
    assert [c["name"] for c in report["connections"]] == ["mine"]
    # a .env beats the TOML; an environment variable beats both
    (cwd / ".env").write_text("CRM_MCP_SYNC_MAX_ATTEMPTS=6\n", encoding="utf-8")
    assert {s["name"]: s["value"] for s in show(cwd, home)["settings"]}["sync_max_attempts"] == 6
    env = {"CRM_MCP_SYNC_MAX_ATTEMPTS": "7"}
    row = next(s for s in show(cwd, home, env)["settings"] if s["name"] == "sync_max_attempts")
    assert row == {"name": "sync_max_attempts", "value": 7, "origin": "environment"}


def test_config_show_text_names_files_and_redacts_secrets(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    toml(cwd / "crm-mcp.toml", conn_table("downtown", "Loc1"))
    env = {
        "CRM_MCP_HTTP_TOKEN": "h" * 40,
        "CRM_MCP_DATABASE_URL": "postgresql+asyncpg://crm:dbpassword@127.0.0.1/crm",
    }
    out = run(cwd, "config", "show", home=home, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "read" in text and str(cwd / "crm-mcp.toml") in text and "absent" in text
    assert "downtown" in text and "sync_max_attempts" in text
    for secret in (TOKEN, "h" * 40, "dbpassword"):
        assert secret not in text


def test_claude_config_prints_absolute_paths(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    toml(cwd / "crm-mcp.toml", conn_table("downtown", "Loc1"))
    out = run(cwd, "claude-config", "--sandbox", home=home)
    assert out.returncode == 0, out.stderr
    entry = json.loads(out.stdout)["mcpServers"]["crm"]
    command = Path(entry["command"])
    assert command.is_absolute() and command.exists()
    assert entry["args"][-2:] == ["serve", "--sandbox"]
    assert entry["env"]["CRM_MCP_CONFIG"] == str(cwd / "crm-mcp.toml")
    assert Path(entry["env"]["CRM_MCP_STATE_DIR"]).is_absolute()
    # the entry works from another directory: the command finds the same config
    other = cwd.parent / "other"
    other.mkdir()
    started = subprocess.run(
        [entry["command"], *entry["args"][:-2], "config", "show", "--json"],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", **entry["env"]},
        cwd=other,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert [c["name"] for c in json.loads(started.stdout)["connections"]] == ["downtown"]


@pytest.mark.parametrize(
    ("env", "files", "needle"),
    [
        ({"CRM_MCP_DATABASE_URL": "postgres://u:pw@127.0.0.1/db"}, {}, "postgresql+asyncpg://"),
        ({"CRM_MCP_DATABASE_URL": "sqlite:///x.db"}, {}, "sqlite+aiosqlite://"),
        ({"CRM_MCP_SYNC_MAX_ATTEMPTS": "many"}, {}, "CRM_MCP_SYNC_MAX_ATTEMPTS"),
        ({}, {"crm-mcp.toml": "sync_max_attempts = \n"}, "is not valid TOML"),
        ({}, {"crm-mcp.toml": "sync_max_atempts = 3\n"}, "did you mean 'sync_max_attempts'"),
        ({}, {"crm-mcp.toml": "sync_max_attempts = 0\n"}, "sync_max_attempts: Input should be greater"),
        ({"CRM_MCP_CONFIG": "/nonexistent/crm-mcp.toml"}, {}, "CRM_MCP_CONFIG=/nonexistent/crm-mcp.toml"),
        # nothing listens on port 9 (discard) on loopback: an unreachable PostgreSQL
        ({"CRM_MCP_DATABASE_URL": "postgresql+asyncpg://u:pw@127.0.0.1:9/db"}, {}, "cannot use the database"),
    ],
)
def test_configuration_mistakes_are_one_line(
    dirs: tuple[Path, Path], env: dict[str, str], files: dict[str, str], needle: str
) -> None:
    cwd, home = dirs
    for name, body in files.items():
        toml(cwd / name, body)
    out = run(cwd, "dlq", "list", home=home, env=env)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert needle in lines[0] and "Traceback" not in out.stderr
    assert "pw@" not in out.stderr

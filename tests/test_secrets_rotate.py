"""`crm-mcp secrets rotate`: every stored credential re-encrypted under a new key, with no downtime.

The big test runs the real command (a subprocess) on 10,000 connections while a "server" in this
process, which loaded its keys before the rotation began, keeps reading and saving credentials:
none of its reads fails. The others show an interrupted rotation resuming, an operator key
(CRM_MCP_SECRET_KEY + CRM_MCP_SECRET_KEY_PREVIOUS) rotation, and rows no known key opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_mcp.cli import main
from crm_mcp.state.credentials import (
    KEY_FILE,
    PREVIOUS_KEY_FILE,
    CredentialCipher,
    EncryptedTokenStore,
    Keyring,
    _context,
    rotate_credentials,
)
from crm_mcp.state.db import Database
from crm_mcp.state.models import Connection

pytestmark = pytest.mark.anyio

CLI = Path(sys.executable).with_name("crm-mcp")
OLD_SECRET = "the old operator secret of 32+ chars"
NEW_SECRET = "the new operator secret of 32+ chars"


def token(i: int) -> dict[str, Any]:
    return {"refresh_token": f"rt-{i}", "access_token": f"at-{i}"}


def name(i: int) -> str:
    return f"conn-{i:05d}"


async def seed(db: Database, cipher: CredentialCipher, count: int, *, start: int = 0) -> None:
    """`count` connections with encrypted credentials, inserted in bulk (as years of installs would)."""
    import json

    rows = [
        {
            "id": str(uuid.uuid4()),
            "provider": "gohighlevel",
            "name": name(i),
            "options": {},
            "credentials_encrypted": cipher.encrypt(
                json.dumps(token(i)).encode(), _context("gohighlevel", name(i))
            ),
            "key_id": cipher.key_id,
        }
        for i in range(start, start + count)
    ]
    async with db.begin_write() as session:
        await session.execute(Connection.__table__.insert(), rows)  # type: ignore[attr-defined]


async def key_ids(db: Database) -> dict[str | None, int]:
    async with db.sessions() as session:
        rows = await session.execute(select(Connection.key_id, func.count()).group_by(Connection.key_id))
        return {k: int(n) for k, n in rows.all()}


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MCP_")}
    env.update({"CRM_MCP_STATE_DIR": str(tmp_path / "state"), "CRM_MCP_LOG_LEVEL": "ERROR", **extra})
    return env


async def run_cli(*argv: str) -> int:
    """`crm-mcp ARGV` in this process (its own event loop, in a thread); returns the exit code."""
    try:
        await asyncio.to_thread(main, list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_rotate_10000_connections_while_a_server_keeps_using_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = Database(f"sqlite+aiosqlite:///{state / 'crm-mcp.db'}")
    await db.upgrade()
    server_keys = Keyring.from_settings(None, state)  # the running server's keyring: old key only
    old_id = server_keys.key_id
    await seed(db, server_keys.current, 10_000)
    store = EncryptedTokenStore(db, server_keys)

    proc = await asyncio.create_subprocess_exec(
        str(CLI),
        "secrets",
        "rotate",
        "--batch-size",
        "250",
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reads = saves = 0
    failures: list[str] = []
    rng = random.Random(7)
    while proc.returncode is None:  # the server's traffic, for as long as the rotation runs
        i = rng.randrange(10_000)
        try:
            if i % 10 == 0:  # a refresh-token rotation: the server saves new tokens
                await store.save_tokens("gohighlevel", name(i), token(i))
                saves += 1
            assert await store.load_tokens("gohighlevel", name(i)) == token(i)
            reads += 1
        except Exception as exc:  # any failure here is downtime
            failures.append(f"{name(i)}: {exc!r}")
        with contextlib.suppress(TimeoutError):  # lets the rotation run; notices its end
            await asyncio.wait_for(proc.wait(), timeout=0.002)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert not failures, failures[:5]
    assert reads > 0
    print(f"\nserver traffic during the rotation: {reads} reads, {saves} saves, 0 failures")
    text = out.decode()
    assert "rotated" in text and "10000 stored" in text, text
    assert "re-encrypted 10000/10000" in err.decode() or "re-encrypted" in err.decode()

    new_id = Keyring.from_settings(None, state).key_id
    assert new_id != old_id and server_keys.key_id == new_id  # the server noticed the new key
    assert await key_ids(db) == {new_id: 10_000}
    assert not (state / PREVIOUS_KEY_FILE).exists()  # the old key is forgotten once unused
    fresh = EncryptedTokenStore(db, Keyring.from_settings(None, state))
    for i in rng.sample(range(10_000), 200):
        assert await fresh.load_tokens("gohighlevel", name(i)) == token(i)
    # state files are owner-only
    assert mode(state) == 0o700
    assert mode(state / KEY_FILE) == 0o600 and mode(state / "crm-mcp.db") == 0o600
    await db.dispose()


async def test_an_interrupted_rotation_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an operator key: the new key in CRM_MCP_SECRET_KEY, the old in ..._PREVIOUS."""
    state = tmp_path / "state"
    url = f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    db = Database(url)
    await db.upgrade()
    old = CredentialCipher.from_secret(OLD_SECRET)
    await seed(db, old, 1_200)
    keys = Keyring.from_settings(NEW_SECRET, state, [OLD_SECRET])

    class Stop(Exception):
        pass

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        await rotate_credentials(db, keys, batch_size=500, progress=stop_after_first_batch)
    assert await key_ids(db) == {keys.key_id: 500, old.key_id: 700}
    store = EncryptedTokenStore(db, keys)  # half-way, both kinds of rows read
    for i in range(0, 1_200, 50):
        assert await store.load_tokens("gohighlevel", name(i)) == token(i)

    for key in list(os.environ):
        if key.startswith("CRM_MCP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRM_MCP_STATE_DIR", str(state))
    monkeypatch.setenv("CRM_MCP_DATABASE_URL", url)
    monkeypatch.setenv("CRM_MCP_SECRET_KEY", NEW_SECRET)
    monkeypatch.setenv("CRM_MCP_SECRET_KEY_PREVIOUS", OLD_SECRET)
    assert await run_cli("secrets", "rotate") == 0
    out, err = capsys.readouterr()
    assert "resuming: 700 credential(s)" in err
    assert "rotated 700 credential(s)" in out and "500 already under it" in out
    assert "CRM_MCP_SECRET_KEY_PREVIOUS can now be removed" in err
    assert await key_ids(db) == {keys.key_id: 1_200}
    only_new = EncryptedTokenStore(db, Keyring.from_settings(NEW_SECRET, state))  # previous key removed
    assert await only_new.load_tokens("gohighlevel", name(999)) == token(999)

    assert await run_cli("secrets", "rotate") == 0  # nothing left to do: says how to rotate next time
    assert "already under key" in capsys.readouterr().err
    await db.dispose()


async def test_rows_no_known_key_opens_are_named_and_fail_the_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = Database(f"sqlite+aiosqlite:///{state / 'crm-mcp.db'}")
    await db.upgrade()
    await seed(db, CredentialCipher.from_state_dir(state), 10)
    await seed(db, CredentialCipher.from_secret("a key nobody kept, 32 characters"), 2, start=10)
    await db.dispose()
    run = await asyncio.to_thread(
        subprocess.run,
        [str(CLI), "secrets", "rotate"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "rotated 10 credential(s)" in run.stdout
    assert "2 credential(s) no known key decrypts (conn-00010, conn-00011)" in run.stderr
    assert (state / PREVIOUS_KEY_FILE).exists() is False or mode(state / PREVIOUS_KEY_FILE) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_rotated_key_files_are_owner_only_and_both_keys_decrypt(tmp_path: Path) -> None:
    from crm_mcp.state.credentials import new_generated_key

    state = tmp_path / "state"
    old = Keyring.from_settings(None, state)
    blob = old.current.encrypt(b"secret", b"ctx")
    mask = os.umask(0o022)  # a usual umask: the files must be 0600 regardless
    try:
        new_generated_key(state)
    finally:
        os.umask(mask)
    keys = Keyring.from_settings(None, state)
    assert keys.key_id != old.key_id and keys.previous_ids == [old.key_id]
    assert (keys.get(old.key_id) or keys.current).decrypt(blob, b"ctx") == b"secret"
    assert mode(state) == 0o700
    assert mode(state / KEY_FILE) == 0o600 and mode(state / PREVIOUS_KEY_FILE) == 0o600
    assert not list(state.glob("*.tmp"))

"""Connection credentials encrypted at rest in the `connections` table (AES-256-GCM, key id stored).

Why this exists: OAuth providers such as GoHighLevel rotate the refresh token on every refresh and
invalidate the old one, so the newest token must survive a restart or the install is lost until a
human reconnects it. It is written here, encrypted, before the connector uses the access token
that came with it (see `crm_mcp.connectors.oauth`).

The key: `CRM_MCP_SECRET_KEY` when set (any string; stretched with HKDF-SHA256), else 32 random
bytes generated once into `<state dir>/secret.key` with mode 0600. Each row stores the key's id (a
hash of the key, not the key), so a wrong or rotated key is reported as such instead of as a
corrupted row. The ciphertext is bound to its (provider, connection) with AES-GCM associated data,
so a row copied to another connection does not decrypt.

Rotation (`crm-mcp secrets rotate`, docs in SECURITY.md) without downtime: a `Keyring` holds the
current key, which encrypts, and the previous keys, which still decrypt rows written under them
(found by the row's key id). `rotate_credentials` re-encrypts rows under previous keys in batches,
each batch one transaction, so an interrupted rotation resumes where it stopped. A process whose
keys come from the state directory notices a rotated `secret.key` (its modification time) before
each save and on an unknown key id, so a running server keeps reading and writing throughout.

The store speaks plain types (`dict[str, Any]`) so it satisfies `connectors.oauth.TokenStore`
structurally: state never imports connectors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Table, bindparam, func, or_, select, update

from crm_mcp.errors import ConfigurationError, StateError, register_secret
from crm_mcp.state.db import Database
from crm_mcp.state.files import private_dir, private_file
from crm_mcp.state.models import Connection

KEY_FILE = "secret.key"
PREVIOUS_KEY_FILE = "secret.key.previous"  # keys of earlier rotations, one per line, until done
_NONCE = 12
_VERSION = b"\x01"


class CredentialCipher:
    """AES-256-GCM with a random 96-bit nonce per message; output = version | nonce | ciphertext."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("the credentials key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"crm-mcp key id\x00" + key).hexdigest()[:16]

    @classmethod
    def from_secret(cls, secret: str) -> CredentialCipher:
        """A key from an operator-chosen secret (CRM_MCP_SECRET_KEY) of any length."""
        if len(secret.strip()) < 16:
            raise ConfigurationError("CRM_MCP_SECRET_KEY must be at least 16 characters")
        register_secret(secret)
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"crm-mcp credentials", info=b"aes-256-gcm")
        return cls(hkdf.derive(secret.strip().encode()))

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> CredentialCipher:
        """The generated key in `state_dir/secret.key` (created 0600 on first use, race-safe; the
        state directory 0700)."""
        path = private_dir(Path(state_dir)) / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            private_file(path)  # an older install's key: owner-only from now on
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(base64.urlsafe_b64encode(os.urandom(32)) + b"\n")
        raw = path.read_bytes().strip()
        try:
            key = base64.urlsafe_b64decode(raw)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigurationError(
                f"{path} does not hold a valid key; restore it or set CRM_MCP_SECRET_KEY"
            )
        return cls(key)

    @classmethod
    def from_settings(cls, secret_key: str | None, state_dir: Path) -> CredentialCipher:
        return cls.from_secret(secret_key) if secret_key else cls.from_state_dir(state_dir)

    @classmethod
    def from_encoded(cls, line: bytes, where: Path) -> CredentialCipher:
        try:
            key = base64.urlsafe_b64decode(line.strip())
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigurationError(f"{where} holds a line that is not a valid key; restore the file")
        return cls(key)

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        if not blob or blob[:1] != _VERSION:
            raise StateError("stored credentials have an unknown format")
        nonce, body = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, context)
        except InvalidTag:
            raise StateError("stored credentials failed authentication (tampered or wrong key)") from None


def _context(provider: str, connection: str) -> bytes:
    return f"crm-mcp:{provider}:{connection}".encode()


def _file_keys(path: Path) -> list[CredentialCipher]:
    if not path.exists():
        return []
    private_file(path)
    return [
        CredentialCipher.from_encoded(line, path) for line in path.read_bytes().splitlines() if line.strip()
    ]


class Keyring:
    """The current key (encrypts and decrypts) and previous keys (decrypt only), by key id.

    `from_settings` reads CRM_MCP_SECRET_KEY (else the state directory's generated `secret.key`)
    as the current key; CRM_MCP_SECRET_KEY_PREVIOUS, `secret.key.previous`, and a generated
    `secret.key` that an operator key has replaced, as previous keys.
    """

    def __init__(
        self,
        current: CredentialCipher,
        previous: Iterable[CredentialCipher] = (),
        *,
        reload: Callable[[], Keyring] | None = None,
        watch: Iterable[Path] = (),
    ) -> None:
        self.current = current
        self._by_id = {c.key_id: c for c in previous}
        self._by_id[current.key_id] = current
        self._reload = reload
        self._watch = tuple(watch)
        self._stamp = self._stamps()

    @property
    def key_id(self) -> str:
        return self.current.key_id

    @property
    def previous_ids(self) -> list[str]:
        return [k for k in self._by_id if k != self.current.key_id]

    def get(self, key_id: str | None) -> CredentialCipher | None:
        return self._by_id.get(key_id) if key_id else None

    def ciphers(self) -> list[CredentialCipher]:
        return [self.current, *(c for k, c in self._by_id.items() if k != self.current.key_id)]

    def _stamps(self) -> tuple[int, ...]:
        return tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in self._watch)

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the keys from where they came from if their files changed; True if reloaded."""
        if self._reload is None or (not force and self._stamps() == self._stamp):
            return False
        fresh = self._reload()
        self.current, self._by_id, self._stamp = fresh.current, fresh._by_id, fresh._stamp
        return True

    @classmethod
    def from_settings(
        cls, secret_key: str | None, state_dir: Path, previous_secrets: Iterable[str] = ()
    ) -> Keyring:
        state_dir = Path(state_dir)
        previous_secrets = [p for p in previous_secrets if p.strip()]

        def load() -> Keyring:
            previous = [CredentialCipher.from_secret(p) for p in previous_secrets]
            previous += _file_keys(state_dir / PREVIOUS_KEY_FILE)
            if secret_key:
                current = CredentialCipher.from_secret(secret_key)
                if (state_dir / KEY_FILE).exists():  # the generated key an operator key replaced
                    previous.append(CredentialCipher.from_state_dir(state_dir))
            else:
                current = CredentialCipher.from_state_dir(state_dir)
            watch = () if secret_key else (state_dir / KEY_FILE, state_dir / PREVIOUS_KEY_FILE)
            return cls(current, previous, reload=load, watch=watch)

        return load()


def new_generated_key(state_dir: Path) -> None:
    """Rotate the state directory's generated key: the current one joins `secret.key.previous`
    (so it still decrypts) before a new `secret.key` replaces it, atomically; both 0600."""
    state_dir = private_dir(Path(state_dir))
    current, previous = state_dir / KEY_FILE, state_dir / PREVIOUS_KEY_FILE
    old = current.read_bytes().strip()
    kept = [line for line in _lines(previous) if line != old]
    _write_private(previous, [*kept, old])
    _write_private(current, [base64.urlsafe_b64encode(os.urandom(32))])


def forget_previous_keys(state_dir: Path, still_used: Iterable[str]) -> list[str]:
    """Drop from `secret.key.previous` the keys no row uses any more; returns the dropped key ids."""
    path = Path(state_dir) / PREVIOUS_KEY_FILE
    used = set(still_used)
    kept: list[bytes] = []
    dropped: list[str] = []
    for line in _lines(path):
        key_id = CredentialCipher.from_encoded(line, path).key_id
        if key_id in used:
            kept.append(line)
        else:
            dropped.append(key_id)
    if dropped and kept:
        _write_private(path, kept)
    elif dropped:
        path.unlink()
    return dropped


def _lines(path: Path) -> list[bytes]:
    return [line.strip() for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def _write_private(path: Path, lines: list[bytes]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class RotationReport:
    key_id: str
    total: int = 0  # rows holding credentials
    rotated: int = 0  # re-encrypted by this run
    already: int = 0  # under the current key before this run
    unreadable: list[str] = field(default_factory=list)  # connections no known key decrypts
    remaining_key_ids: list[str] = field(default_factory=list)  # previous keys rows still use


_NEEDS = or_(Connection.key_id.is_(None), Connection.key_id != bindparam("current"))


async def rotate_credentials(
    db: Database,
    keyring: Keyring,
    *,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> RotationReport:
    """Re-encrypt every stored credential under `keyring.current`, `batch_size` rows per
    transaction. Safe to interrupt and run again (it resumes), and to run while servers use the
    credentials: a row changed meanwhile is left alone by this sweep and taken by the next one."""
    current = keyring.current
    report = RotationReport(key_id=current.key_id)
    has = Connection.credentials_encrypted.is_not(None)
    async with db.sessions() as session:
        report.total = int(await session.scalar(select(func.count()).where(has)) or 0)
        todo = int(
            await session.scalar(select(func.count()).where(has, _NEEDS), {"current": current.key_id}) or 0
        )
    report.already = report.total - todo
    unreadable: dict[str, str] = {}
    for _sweep in range(3):  # a sweep after the first only finds rows saved under an old key meanwhile
        rotated_before, after_id = report.rotated, ""
        while True:
            async with db.sessions() as session:
                rows = (
                    await session.execute(
                        select(
                            Connection.id,
                            Connection.provider,
                            Connection.name,
                            Connection.credentials_encrypted,
                            Connection.key_id,
                        )
                        .where(has, _NEEDS, Connection.id > after_id)
                        .order_by(Connection.id)
                        .limit(batch_size),
                        {"current": current.key_id},
                    )
                ).all()
            if not rows:
                break
            after_id = rows[-1].id
            changes = []
            for row in rows:
                plain = _decrypt_any(keyring, row)
                if plain is None:
                    unreadable[row.id] = row.name
                    continue
                unreadable.pop(row.id, None)
                blob = current.encrypt(plain, _context(row.provider, row.name))
                changes.append({"b_id": row.id, "b_old": row.credentials_encrypted, "b_new": blob})
            if changes:
                table = cast(Table, Connection.__table__)
                stmt = (
                    update(table)
                    .where(
                        table.c.id == bindparam("b_id"), table.c.credentials_encrypted == bindparam("b_old")
                    )
                    .values(credentials_encrypted=bindparam("b_new"), key_id=current.key_id)
                )
                async with db.begin_write() as session:
                    await session.execute(stmt, changes)
                report.rotated += len(changes)
            if progress is not None:
                progress(min(report.rotated + len(unreadable), todo), todo)
        if report.rotated == rotated_before:
            break
    report.unreadable = sorted(unreadable.values())
    async with db.sessions() as session:
        used = await session.scalars(
            select(Connection.key_id).where(has, _NEEDS).distinct(), {"current": current.key_id}
        )
        report.remaining_key_ids = sorted(k or "(none)" for k in used)
    return report


def _decrypt_any(keyring: Keyring, row: Any) -> bytes | None:
    """The row's plaintext under its own key (or, with no key id recorded, any known key)."""
    context = _context(row.provider, row.name)
    cipher = keyring.get(row.key_id)
    candidates = [cipher] if cipher is not None else ([] if row.key_id else keyring.ciphers())
    for c in candidates:
        try:
            return c.decrypt(bytes(row.credentials_encrypted), context)
        except StateError:
            continue
    return None


class EncryptedTokenStore:
    """`TokenStore` over the `connections` table: one encrypted JSON document per connection."""

    def __init__(self, db: Database, keys: CredentialCipher | Keyring) -> None:
        self._db = db
        self._keys = keys if isinstance(keys, Keyring) else Keyring(keys)

    @property
    def key_id(self) -> str:
        return self._keys.key_id

    async def load_tokens(self, provider: str, connection: str) -> dict[str, Any] | None:
        async with self._db.sessions() as session:
            row = await session.scalar(select(Connection).where(Connection.name == connection))
            if row is None or row.credentials_encrypted is None:
                return None
            blob, key_id = bytes(row.credentials_encrypted), row.key_id
        cipher = self._keys.get(key_id) if key_id else self._keys.current
        if cipher is None and self._keys.refresh():  # rotated meanwhile by `crm-mcp secrets rotate`
            cipher = self._keys.get(key_id)
        if cipher is None:
            raise ConfigurationError(
                f"credentials of connection {connection!r} were encrypted with key {key_id}, but the "
                f"configured key is {self._keys.key_id}: restore the previous CRM_MCP_SECRET_KEY "
                "(or state-dir secret.key; during a rotation, CRM_MCP_SECRET_KEY_PREVIOUS), or "
                "reconnect the connection"
            )
        data = json.loads(cipher.decrypt(blob, _context(provider, connection)))
        if not isinstance(data, dict):
            raise StateError(f"stored credentials of connection {connection!r} are not an object")
        for value in data.values():
            if isinstance(value, str):
                register_secret(value)
        return data

    async def save_tokens(self, provider: str, connection: str, tokens: dict[str, Any]) -> None:
        self._keys.refresh()  # a rotated state-dir key encrypts from now on
        cipher = self._keys.current
        blob = cipher.encrypt(json.dumps(tokens, sort_keys=True).encode(), _context(provider, connection))
        async with self._db.begin_write() as session:
            row = await session.scalar(select(Connection).where(Connection.name == connection))
            if row is None:
                row = Connection(provider=provider, name=connection, options={})
                session.add(row)
            row.provider = provider
            row.credentials_encrypted = blob
            row.key_id = cipher.key_id

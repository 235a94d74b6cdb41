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

The store speaks plain types (`dict[str, Any]`) so it satisfies `connectors.oauth.TokenStore`
structurally: state never imports connectors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from crm_mcp.errors import ConfigurationError, StateError, register_secret
from crm_mcp.state.db import Database
from crm_mcp.state.files import private_dir, private_file
from crm_mcp.state.models import Connection

KEY_FILE = "secret.key"
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


class EncryptedTokenStore:
    """`TokenStore` over the `connections` table: one encrypted JSON document per connection."""

    def __init__(self, db: Database, cipher: CredentialCipher) -> None:
        self._db = db
        self._cipher = cipher

    @property
    def key_id(self) -> str:
        return self._cipher.key_id

    async def load_tokens(self, provider: str, connection: str) -> dict[str, Any] | None:
        async with self._db.sessions() as session:
            row = await session.scalar(select(Connection).where(Connection.name == connection))
            if row is None or row.credentials_encrypted is None:
                return None
            blob, key_id = bytes(row.credentials_encrypted), row.key_id
        if key_id and key_id != self._cipher.key_id:
            raise ConfigurationError(
                f"credentials of connection {connection!r} were encrypted with key {key_id}, but the "
                f"configured key is {self._cipher.key_id}: restore the previous CRM_MCP_SECRET_KEY "
                "(or state-dir secret.key), or reconnect the connection"
            )
        data = json.loads(self._cipher.decrypt(blob, _context(provider, connection)))
        if not isinstance(data, dict):
            raise StateError(f"stored credentials of connection {connection!r} are not an object")
        for value in data.values():
            if isinstance(value, str):
                register_secret(value)
        return data

    async def save_tokens(self, provider: str, connection: str, tokens: dict[str, Any]) -> None:
        blob = self._cipher.encrypt(
            json.dumps(tokens, sort_keys=True).encode(), _context(provider, connection)
        )
        async with self._db.begin_write() as session:
            row = await session.scalar(select(Connection).where(Connection.name == connection))
            if row is None:
                row = Connection(provider=provider, name=connection, options={})
                session.add(row)
            row.provider = provider
            row.credentials_encrypted = blob
            row.key_id = self._cipher.key_id

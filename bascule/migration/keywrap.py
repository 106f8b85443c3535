"""The local key that wraps per-object file keys in the journal.

Its own module, free of SQLite and logging, because worker processes unwrap file keys and
import only what a part task needs.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bascule.errors import JournalError


class KeyWrapper:
    """Wraps per-object file keys under a 32-byte local key (file mode 0600)."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def load(cls, path: Path) -> KeyWrapper:
        """The existing key at `path`; JournalError if missing, shared or damaged."""
        if not path.exists():
            raise JournalError(
                f"{path}: journal key file not found; copy it from the coordinator "
                "(or set BASCULE_JOURNAL_KEY_FILE)"
            )
        if path.stat().st_mode & 0o077:
            raise JournalError(
                f"{path}: journal key file is readable by others; run `chmod 600 {path}`"
            )
        key = path.read_bytes()
        if len(key) != 32:
            raise JournalError(f"{path}: journal key file is damaged (not 32 bytes)")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> KeyWrapper:
        if path.exists():
            return cls.load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return cls(key)

    def wrap(self, file_key: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, file_key, context.encode())

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], context.encode())
        except InvalidTag:
            raise JournalError(
                f"cannot unwrap the file key of {context}: the journal key file does not match "
                "this journal; restore the right key file or start a new journal"
            ) from None

"""age v1 encryption (age-encryption.org/v1) in random-access form.

An age file is a header (recipient stanzas + MAC), a 16-byte nonce, then the STREAM
payload: 64 KiB plaintext chunks, each sealed with ChaCha20-Poly1305 under
HKDF-SHA-256(file key, salt = nonce, info "payload"), nonce = 11-byte big-endian chunk index
|| final flag. Every chunk but the last is 65,552 bytes on disk, so chunk k starts at
``header_len + 16 + k * 65552``: chunks can be sealed in any order by independent workers
(`PayloadCipher.encrypt_chunks`) and read alone (`AgeRangeReader`). The last chunk carries
the final flag, which makes truncation at a chunk boundary detectable; it is non-empty
unless the whole file is empty.

Keys live in `age_keys`, the header in `age_header`, armor in `age_armor`; this module is
the public surface. Every failure to read is an `EncryptionError` subclass (`age_errors`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bascule.age.armor import ArmorReader, ByteSource, is_armored
from bascule.age.errors import (
    AgeArmorError,
    AgeHeaderError,
    AgeHeaderMacError,
    AgeNoMatchError,
    AgePayloadError,
)
from bascule.age.header import (
    MAX_HEADER_BYTES,
    Header,
    encode_header,
    parse_header_bytes,
    parse_header_prefix,
    unwrap_header,
)
from bascule.age.keys import (
    FILE_KEY_SIZE,
    X25519Identity,
    X25519Recipient,
    hkdf_sha256,
    load_identities,
    parse_recipients,
    write_identity_file,
)
from bascule.age.sizes import (
    CHUNK_OVERHEAD,
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    chunk_count,
    chunk_offset,
    ciphertext_size,
    plaintext_size,
)
from bascule.errors import ConfigError

__all__ = [
    "CHUNK_OVERHEAD",
    "CHUNK_SIZE",
    "ENCRYPTED_CHUNK_SIZE",
    "HEADER_ALLOWANCE",
    "NONCE_SIZE",
    "AgeArmorError",
    "AgeHeaderError",
    "AgeHeaderMacError",
    "AgeNoMatchError",
    "AgePayloadError",
    "AgeRangeReader",
    "FileKeyMaterial",
    "PayloadCipher",
    "X25519Identity",
    "X25519Recipient",
    "chunk_count",
    "chunk_offset",
    "ciphertext_size",
    "decrypt_stream",
    "encrypt_stream",
    "load_identities",
    "new_file",
    "parse_header",
    "parse_recipients",
    "plaintext_size",
    "unwrap_file_key",
    "write_identity_file",
]

HEADER_ALLOWANCE = 16 * 1024  # first ranged read: header (X25519 ~ 130 B a recipient) + chunk 0
_STREAM_BATCH_CHUNKS = 16  # encrypt_stream seals 1 MiB per call


@dataclass(frozen=True)
class FileKeyMaterial:
    """What a new encrypted object needs: keep `file_key` secret (it is not in the repr).

    `header` is the full header text incl. the ``--- <mac>`` line; the payload starts right
    after it with `nonce`."""

    file_key: bytes = field(repr=False)
    header: bytes
    nonce: bytes


def new_file(recipients: Sequence[X25519Recipient]) -> FileKeyMaterial:
    """A fresh random file key and nonce, and the header wrapping the key for `recipients`.

    Raises ConfigError if `recipients` is empty."""
    if not recipients:
        raise ConfigError("no age recipient: set encryption.recipients (age1...) in the config")
    drawn = os.urandom(FILE_KEY_SIZE + NONCE_SIZE)  # one getrandom(2) for both
    file_key, nonce = drawn[:FILE_KEY_SIZE], drawn[FILE_KEY_SIZE:]
    return FileKeyMaterial(file_key, encode_header(file_key, recipients), nonce)


class PayloadCipher:
    """Seals and opens STREAM chunks of one file. Stateless: safe to share between threads."""

    def __init__(self, file_key: bytes, nonce: bytes) -> None:
        if len(file_key) != FILE_KEY_SIZE or len(nonce) != NONCE_SIZE:
            raise ValueError("an age file key and a payload nonce are 16 bytes each")
        self._key = hkdf_sha256(file_key, nonce, b"payload")

    @staticmethod
    def _nonce(index: int, final: bool) -> bytes:
        return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")

    def encrypt_chunks(self, first_index: int, plaintext: bytes, final: bool) -> bytes:
        """Ciphertext of the whole chunks `plaintext` holds, starting at chunk `first_index`.

        `plaintext` is a multiple of CHUNK_SIZE unless `final` (the file's last chunk is in
        it). Raises ValueError on a misaligned length or an empty final chunk that is not the
        whole file (the caller's bug, never data-dependent)."""
        self._check_plaintext(first_index, len(plaintext), final)
        aead = ChaCha20Poly1305(self._key)  # one per call: no object shared between threads
        view = memoryview(plaintext)
        starts = range(0, max(len(plaintext), 1), CHUNK_SIZE)
        last = len(starts) - 1
        return b"".join(
            aead.encrypt(
                self._nonce(first_index + i, final and i == last),
                view[start : start + CHUNK_SIZE],
                None,
            )
            for i, start in enumerate(starts)
        )

    def encrypt_chunks_into(
        self,
        first_index: int,
        plaintext: bytes | bytearray | memoryview,
        final: bool,
        out: bytearray | memoryview,
    ) -> int:
        """As `encrypt_chunks`, written into `out` (reusable); returns the bytes written.

        The fast path: no allocation and no copy (about 1.6x `encrypt_chunks`). Raises
        ValueError as `encrypt_chunks`, and if `out` is shorter than the ciphertext."""
        size = len(plaintext)
        self._check_plaintext(first_index, size, final)
        sealed_size = size + CHUNK_OVERHEAD * max(1, -(-size // CHUNK_SIZE))
        if len(out) < sealed_size:
            raise ValueError(f"output buffer holds {len(out)} bytes, {sealed_size} needed")
        aead = ChaCha20Poly1305(self._key)
        src, dst = memoryview(plaintext), memoryview(out)
        starts = range(0, max(size, 1), CHUNK_SIZE)
        last = len(starts) - 1
        for i, start in enumerate(starts):
            piece = src[start : start + CHUNK_SIZE]
            at = i * ENCRYPTED_CHUNK_SIZE
            nonce = self._nonce(first_index + i, final and i == last)
            aead.encrypt_into(nonce, piece, None, dst[at : at + len(piece) + CHUNK_OVERHEAD])
        return sealed_size

    @staticmethod
    def _check_plaintext(first_index: int, size: int, final: bool) -> None:
        if not final and (size == 0 or size % CHUNK_SIZE):
            raise ValueError(f"non-final plaintext must be whole chunks, got {size} bytes")
        if final and size == 0 and first_index != 0:
            raise ValueError("the final chunk is empty only when the whole file is empty")

    def decrypt_chunks(self, first_index: int, ciphertext: bytes, final: bool) -> bytes:
        """Plaintext of consecutive chunks starting at `first_index`, each authenticated.

        `final` says the last chunk in `ciphertext` is the file's last. Raises
        AgePayloadError naming the chunk that fails (tampered, truncated, reordered, or
        an empty final chunk after others)."""
        aead = ChaCha20Poly1305(self._key)
        view = memoryview(ciphertext)
        starts = range(0, max(len(ciphertext), 1), ENCRYPTED_CHUNK_SIZE)
        last = len(starts) - 1
        out = []
        for i, start in enumerate(starts):
            piece = view[start : start + ENCRYPTED_CHUNK_SIZE]
            index = first_index + i
            is_final = final and i == last
            if len(piece) < ENCRYPTED_CHUNK_SIZE and not is_final:
                raise AgePayloadError(f"age chunk {index} is truncated ({len(piece)} bytes)")
            out.append(self._open(aead, index, piece, is_final))
            if is_final and not out[-1] and index > 0:
                raise AgePayloadError(f"age final chunk {index} is empty (file extended)")
        return b"".join(out)

    def _open(self, aead: ChaCha20Poly1305, index: int, piece: memoryview, final: bool) -> bytes:
        if len(piece) < CHUNK_OVERHEAD:
            raise AgePayloadError(f"age chunk {index} is truncated ({len(piece)} bytes)")
        try:
            return aead.decrypt(self._nonce(index, final), piece, None)
        except InvalidTag:
            where = "final " if final else ""
            raise AgePayloadError(
                f"age {where}chunk {index} failed authentication: the object is corrupted, "
                "truncated or reordered, or was written with another file key"
            ) from None


def parse_header(data: bytes) -> tuple[bytes, int]:
    """(header bytes incl. the MAC line, header length) at the start of `data`.

    Raises AgeHeaderError if the header is malformed or `data` ends before it does."""
    header = parse_header_bytes(data)
    return header.raw, len(header.raw)


def unwrap_file_key(header: bytes, identities: Sequence[X25519Identity]) -> bytes:
    """The file key of `header` (full header text), after verifying the header MAC.

    Raises AgeHeaderError (malformed), AgeNoMatchError (no identity opens a stanza),
    AgeHeaderMacError (MAC mismatch)."""
    return unwrap_header(parse_header_bytes(header), identities)


class AgeRangeReader:
    """Random access to the plaintext of an age file stored remotely.

    `read_ciphertext(offset, length)` is one ranged GET. The constructor makes one call for
    the first window (header allowance + nonce + chunk 0) and keeps it; only a header longer
    than HEADER_ALLOWANCE costs further calls. Each `read` then makes at most one call, for
    the contiguous chunks covering the range, and authenticates every chunk it decrypts.
    Errors: the constructor raises AgeArmorError (armored file), AgeHeaderError,
    AgeNoMatchError or AgeHeaderMacError; `read` raises AgePayloadError, also when a ranged
    read returns fewer bytes than asked (object changed or shorter than listed).
    """

    def __init__(
        self,
        read_ciphertext: Callable[[int, int], bytes],
        ciphertext_size: int,
        identities: Sequence[X25519Identity],
    ) -> None:
        self._fetch = read_ciphertext
        self._total = ciphertext_size
        self._window = self._read_header_window()
        header = parse_header_prefix(self._window)
        if header is None:  # unreachable: _read_header_window reads until parsed or fails
            raise AgeHeaderError("the age header is truncated")
        self._file_key = unwrap_header(header, identities)
        self.header_len = len(header.raw)
        self.size = plaintext_size(ciphertext_size, self.header_len)
        nonce = self._window[self.header_len : self.header_len + NONCE_SIZE]
        self._cipher = PayloadCipher(self._file_key, nonce)
        self._chunks = chunk_count(self.size)
        if self.size == 0:  # no read will ever touch the empty final chunk: check it now
            self.read_chunks(0, 1)

    def _get(self, offset: int, length: int) -> bytes:
        data = self._fetch(offset, length)
        if len(data) != length:
            raise AgePayloadError(
                f"ranged read at {offset} returned {len(data)} bytes instead of {length}: "
                "the object changed or is shorter than listed"
            )
        return data

    def _read_header_window(self) -> bytes:
        want = min(self._total, HEADER_ALLOWANCE + NONCE_SIZE + ENCRYPTED_CHUNK_SIZE)
        window = self._get(0, want)
        if window.lstrip(b" \t\r\n").startswith(b"-----BEGIN"):
            raise AgeArmorError(
                "an armored (PEM) age file cannot be read by range: store the binary form"
            )
        while parse_header_prefix(window) is None:
            if len(window) >= min(self._total, MAX_HEADER_BYTES):
                raise AgeHeaderError("the age header is truncated or longer than 1 MiB")
            more = min(self._total, MAX_HEADER_BYTES, 2 * len(window)) - len(window)
            window += self._get(len(window), more)
        return window

    def read_chunks(self, first: int, count: int) -> bytes:
        """Plaintext of chunks first .. first+count-1 (clipped to the file), authenticated."""
        last = min(first + count, self._chunks) - 1
        if first < 0 or last < first:
            return b""
        start = chunk_offset(first, self.header_len)
        end = min(chunk_offset(last + 1, self.header_len), self._total)
        if end <= len(self._window):
            data = self._window[start:end]
        else:
            data = self._get(start, end - start)
        return self._cipher.decrypt_chunks(first, data, final=last == self._chunks - 1)

    def read(self, offset: int, length: int) -> bytes:
        """`length` plaintext bytes from `offset` (fewer past the end), every chunk verified."""
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range offset={offset} length={length}")
        end = min(offset + length, self.size)
        if end <= offset:
            return b""
        first = offset // CHUNK_SIZE
        plain = self.read_chunks(first, (end - 1) // CHUNK_SIZE - first + 1)
        skip = offset - first * CHUNK_SIZE
        return plain[skip : skip + end - offset]


def _read_stream_header(source: ByteSource) -> Header:
    """Read line by line up to the MAC line: the payload after it stays in `source`.

    Base64 body lines never start with "-", so the first "---" line ends the header."""
    buf = b""
    while True:
        line = source.readline(MAX_HEADER_BYTES - len(buf))
        buf += line
        if not line.endswith(b"\n") or line.startswith(b"---"):
            return parse_header_bytes(buf)  # raises if malformed or cut short


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    identities: Sequence[X25519Identity],
    *,
    armored: bool | None = None,
) -> int:
    """Decrypt a whole age file from `src` to `dst`, chunk by chunk; returns bytes written.

    `armored`: None detects PEM armor, True requires it, False refuses it. Memory stays
    bounded (~1 MiB). Each chunk is written once authenticated, so on AgePayloadError `dst`
    holds the plaintext released before the failure: discard it. Raises the
    `age_errors` classes."""
    source = ByteSource(src.read)
    if armored is None:
        armored = is_armored(source)
    if armored:
        source = ByteSource(ArmorReader(source).read)
    header = _read_stream_header(source)
    file_key = unwrap_header(header, identities)
    nonce = source.read(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise AgeHeaderError("the age payload nonce is missing or cut (truncated file)")
    return _decrypt_payload(source, dst, PayloadCipher(file_key, nonce))


def _decrypt_payload(source: ByteSource, dst: BinaryIO, cipher: PayloadCipher) -> int:
    written, index = 0, 0
    pending = source.read(ENCRYPTED_CHUNK_SIZE)
    if not pending:
        raise AgePayloadError("the age payload has no chunk at all (truncated)")
    while True:
        following = (
            source.read(ENCRYPTED_CHUNK_SIZE) if len(pending) == ENCRYPTED_CHUNK_SIZE else b""
        )
        final, plain = _open_streamed(cipher, index, pending)
        dst.write(plain)
        written += len(plain)
        if final and following:
            raise AgePayloadError(f"data after the final age chunk {index} (file extended)")
        if final:
            return written
        if not following:
            raise AgePayloadError(
                f"the age file ends after chunk {index}, which is not marked final (truncated)"
            )
        pending, index = following, index + 1


def _open_streamed(cipher: PayloadCipher, index: int, piece: bytes) -> tuple[bool, bytes]:
    """(is final, plaintext) of a chunk whose position is not known from the file size.

    A full chunk may be final or not; like the reference implementation, try non-final
    first, so truncation and trailing data are reported as such."""
    if len(piece) < ENCRYPTED_CHUNK_SIZE:
        return True, cipher.decrypt_chunks(index, piece, final=True)
    try:
        return False, cipher.decrypt_chunks(index, piece, final=False)
    except AgePayloadError:
        return True, cipher.decrypt_chunks(index, piece, final=True)


def encrypt_stream(src: BinaryIO, dst: BinaryIO, recipients: Sequence[X25519Recipient]) -> int:
    """Encrypt all of `src` to `dst` as one age file; returns the ciphertext bytes written."""
    material = new_file(recipients)
    cipher = PayloadCipher(material.file_key, material.nonce)
    dst.write(material.header + material.nonce)
    written = len(material.header) + NONCE_SIZE
    source = ByteSource(src.read)
    batch = _STREAM_BATCH_CHUNKS * CHUNK_SIZE
    sealed = bytearray(_STREAM_BATCH_CHUNKS * ENCRYPTED_CHUNK_SIZE)  # reused for every batch
    pending, index = source.read(batch), 0
    while True:
        following = source.read(batch) if len(pending) == batch else b""
        size = cipher.encrypt_chunks_into(index, pending, not following, sealed)
        dst.write(memoryview(sealed)[:size])
        written += size
        if not following:
            return written
        pending, index = following, index + _STREAM_BATCH_CHUNKS

"""The reading half of `bascule verify`: tasks that re-read objects, run in threads or on Dask.

A task carries no secret: endpoints are named by config (environment variable names), and an
encrypted target is opened with the identity file that the environment variable named by
`encryption.identity_file_env` points to *in the worker's own environment*.

- `read_parts` (`--level full`): one or more parts of one object. The source range is hashed
  (SHA-256, and MD5 when one task covers the whole object, to compare Azure's Content-MD5);
  the target range is hashed as stored (ciphertext) and, when encrypted, decrypted chunk by
  chunk, each chunk authenticated, and the plaintext hashed. Part boundaries are those of the
  copy, so the composites compare with the journal's.
- `count_object_rows` (`--rows`): row counts on both sides through ranged reads; an encrypted
  target is read through `AgeRangeReader`, so a Parquet footer costs at most 3 ranged GETs.

Memory: a task holds at most about 2 MiB (1 MiB plaintext pieces and their ciphertext), plus
what the row counter holds for one block (`counts.count_rows`, 4 MiB by default).

Errors: a side that cannot be read or decrypted is reported in the result (the run goes on);
ConfigError (no identity on a worker) propagates and stops the run.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bascule.age.sizes import CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, NONCE_SIZE, encrypted_length
from bascule.age.stream import (
    AgeRangeReader,
    PayloadCipher,
    X25519Identity,
    load_identities,
    parse_header,
    unwrap_file_key,
)
from bascule.connectors.base import ByteRange, Connector
from bascule.endpoints import EndpointRef, connector
from bascule.errors import ConfigError, ConnectorError, EncryptionError
from bascule.migration.retry import call_with_retries
from bascule.verification.counts import RowCount, count_rows

READ_CHUNKS = 16  # 1 MiB of plaintext per read: whole age chunks
ATTEMPTS = 3  # per side of a task, on errors the connector calls transient


@dataclass(frozen=True)
class PartRange:
    """Plaintext bytes [offset, offset + length) of an object: part `number` of its copy."""

    number: int
    offset: int
    length: int
    final: bool

    @property
    def first_chunk(self) -> int:
        return self.offset // CHUNK_SIZE

    def cipher_range(self, header_len: int) -> ByteRange:
        """Where this part lies in the age file (part 1 also holds the header and nonce)."""
        prefix = header_len + NONCE_SIZE
        if self.number == 1:
            return ByteRange(0, prefix + encrypted_length(self.length))
        return ByteRange(
            prefix + self.first_chunk * ENCRYPTED_CHUNK_SIZE, encrypted_length(self.length)
        )


@dataclass(frozen=True)
class ReadTask:
    """Parts of one object to re-read. `source` None: the target alone (source changed)."""

    source: EndpointRef | None
    source_key: str
    target: EndpointRef
    target_key: str
    encrypt: bool
    header_len: int
    parts: tuple[PartRange, ...]
    md5: bool = False  # the parts are the whole object, in order: also MD5 the source
    identity_env: str | None = None
    attempts: int = ATTEMPTS  # per side, on errors the connector calls transient


@dataclass(frozen=True)
class PartDigest:
    number: int
    source_sha256: str | None
    target_sha256: str | None
    target_cipher_sha256: str | None


@dataclass(frozen=True)
class ReadResult:
    digests: tuple[PartDigest, ...]
    source_md5: str | None = None
    source_error: str | None = None
    target_error: str | None = None
    undecryptable: bool = False
    bytes_read: int = 0


_identities: dict[str, list[X25519Identity]] = {}
_identities_lock = threading.Lock()


def worker_identities(env_var: str | None) -> list[X25519Identity]:
    """This process's identities, from the file `env_var` names. ConfigError when unset."""
    path = os.environ.get(env_var) if env_var else None
    if not path:
        name = env_var or "the variable named by encryption.identity_file_env"
        raise ConfigError(
            f"reading the encrypted target needs the age identity: export {name}=PATH on "
            "every worker"
        )
    with _identities_lock:
        found = _identities.get(path)
        if found is None:
            found = _identities[path] = load_identities(Path(path))
        return found


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectorError) and exc.key and exc.key not in str(exc):
        return f"{exc} ({exc.connector}/{exc.key})"
    return str(exc)


def _retrying(conn: Connector, fn: Callable[[], Any], attempts: int = ATTEMPTS) -> Any:
    return call_with_retries(fn, conn.should_retry, attempts)[0]


def _pieces(stream: BinaryIO, length: int, piece: int) -> Iterator[bytes]:
    """`length` bytes in pieces of `piece`; ConnectorError if the stream ends early."""
    left = length
    while left:
        want = min(piece, left)
        data = stream.read(want)
        while data and len(data) < want:  # short reads happen; decryption needs whole chunks
            more = stream.read(want - len(data))
            if not more:
                break
            data += more
        if len(data) < want:
            got = length - left + len(data)
            raise ConnectorError(f"ended after {got} of {length} bytes (truncated)")
        left -= len(data)
        yield data


def _read_source(task: ReadTask, conn: Connector) -> tuple[list[str], str | None, int]:
    md5 = hashlib.md5(usedforsecurity=False) if task.md5 else None
    digests, total = [], 0
    for part in task.parts:
        h = hashlib.sha256()
        with conn.open_read(task.source_key, ByteRange(part.offset, part.length)) as stream:
            for data in _pieces(stream, part.length, READ_CHUNKS * CHUNK_SIZE):
                h.update(data)
                if md5 is not None:
                    md5.update(data)
                total += len(data)
        digests.append(h.hexdigest())
    return digests, md5.hexdigest() if md5 else None, total


@dataclass
class _TargetPart:
    cipher: Any = field(default_factory=hashlib.sha256)
    plain: Any = field(default_factory=hashlib.sha256)
    error: str | None = None


def _cipher(task: ReadTask, window: bytes) -> PayloadCipher:
    """The payload cipher from the object's first bytes (header + nonce); EncryptionError if
    the header is bad or not the length the copy had (object replaced)."""
    header, length = parse_header(window)
    if length != task.header_len or len(window) < length + NONCE_SIZE:
        raise EncryptionError(
            f"the age header is {length} bytes, {task.header_len} expected (object replaced)"
        )
    identities = worker_identities(task.identity_env)
    return PayloadCipher(unwrap_file_key(header, identities), window[length : length + NONCE_SIZE])


def _head(task: ReadTask, conn: Connector) -> bytes:
    want = task.header_len + NONCE_SIZE
    with conn.open_read(task.target_key, ByteRange(0, want)) as stream:
        return bytes(stream.read(want))


def _read_target_part(
    task: ReadTask, conn: Connector, part: PartRange, cipher: PayloadCipher | None
) -> tuple[_TargetPart, PayloadCipher | None]:
    """Hash the stored bytes of `part`, and decrypt them when encrypted (part 1 brings the
    header: no separate read). A decryption failure is kept in the result while the
    ciphertext is still hashed to the end."""
    out = _TargetPart()
    rng = (
        part.cipher_range(task.header_len) if task.encrypt else ByteRange(part.offset, part.length)
    )
    skip = task.header_len + NONCE_SIZE if task.encrypt and part.number == 1 else 0
    step = READ_CHUNKS * ENCRYPTED_CHUNK_SIZE if task.encrypt else READ_CHUNKS * CHUNK_SIZE
    index, done = part.first_chunk, 0
    with conn.open_read(task.target_key, rng) as stream:
        if skip:
            head = b"".join(_pieces(stream, skip, skip))
            out.cipher.update(head)
            done += len(head)
            cipher = cipher or _cipher(task, head)
        for data in _pieces(stream, rng.length - done, step):
            out.cipher.update(data)
            done += len(data)
            if not task.encrypt:
                out.plain.update(data)
            elif out.error is None and cipher is not None:
                try:
                    final = part.final and done == rng.length
                    out.plain.update(cipher.decrypt_chunks(index, data, final))
                except EncryptionError as exc:
                    out.error = str(exc)
            index += READ_CHUNKS
    return out, cipher


def _read_target(task: ReadTask, conn: Connector) -> tuple[list[_TargetPart], int]:
    cipher = None
    if task.encrypt and task.parts[0].number != 1:
        cipher = _cipher(task, _head(task, conn))
    parts = []
    for p in task.parts:
        out, cipher = _read_target_part(task, conn, p, cipher)
        parts.append(out)
    total = sum(
        p.cipher_range(task.header_len).length if task.encrypt else p.length for p in task.parts
    )
    return parts, total


def read_parts(task: ReadTask) -> ReadResult:
    """Re-read the task's parts on both sides (see the module docstring). Never raises for a
    side that cannot be read; raises ConfigError when the worker has no identity."""
    src_digests: list[str | None] = [None] * len(task.parts)
    md5, src_error, nbytes = None, None, 0
    if task.source is not None:
        src = connector(task.source)
        try:
            found, md5, nbytes = _retrying(src, lambda: _read_source(task, src), task.attempts)
            src_digests = list(found)
        except ConnectorError as exc:
            src_error = _describe(exc)
    tgt = connector(task.target)
    tgt_parts: list[_TargetPart] = []
    tgt_error, undecryptable = None, False
    try:
        tgt_parts, tgt_bytes = _retrying(tgt, lambda: _read_target(task, tgt), task.attempts)
        nbytes += tgt_bytes
        tgt_error = next((p.error for p in tgt_parts if p.error), None)
        undecryptable = tgt_error is not None
    except EncryptionError as exc:
        tgt_error, undecryptable = str(exc), True
    except ConnectorError as exc:
        tgt_error = _describe(exc)
    digests = tuple(
        PartDigest(
            part.number,
            src_digests[i],
            tgt_parts[i].plain.hexdigest() if tgt_parts and not tgt_error else None,
            tgt_parts[i].cipher.hexdigest() if tgt_parts else None,
        )
        for i, part in enumerate(task.parts)
    )
    return ReadResult(digests, md5, src_error, tgt_error, undecryptable, nbytes)


class ConnectorReader:
    """A `counts.RangeReader` over one object of a connector: each `read` is one ranged GET."""

    def __init__(self, conn: Connector, key: str, size: int) -> None:
        self._conn = conn
        self._key = key
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""

        def get() -> bytes:
            with self._conn.open_read(self._key, ByteRange(offset, length)) as stream:
                return stream.read()

        data: bytes = _retrying(self._conn, get)
        return data


class _AgeReader:
    """`counts.RangeReader` over the plaintext of an encrypted object (chunks authenticated)."""

    def __init__(self, inner: AgeRangeReader) -> None:
        self._inner = inner

    @property
    def size(self) -> int:
        return self._inner.size

    def read(self, offset: int, length: int) -> bytes:
        return self._inner.read(offset, length)


def count_target_rows(
    conn: Connector,
    key: str,
    size: int,
    fmt: str,
    identities: list[X25519Identity] | None,
) -> RowCount:
    """Rows of one target object (`size` as stored); decrypted when `identities` are given.

    Raises EncryptionError (undecryptable) or ConnectorError (unreadable)."""
    raw = ConnectorReader(conn, key, size)
    if identities is None:
        return count_rows(fmt, raw)
    return count_rows(fmt, _AgeReader(AgeRangeReader(raw.read, size, identities)))


@dataclass(frozen=True)
class RowsTask:
    """Count one object on both sides (`source` None: the target alone)."""

    format: str
    source: EndpointRef | None
    source_key: str
    source_size: int
    target: EndpointRef
    target_key: str
    target_size: int
    encrypt: bool
    identity_env: str | None = None


@dataclass(frozen=True)
class RowsResult:
    source: RowCount | None
    target: RowCount | None
    source_error: str | None = None
    target_error: str | None = None
    undecryptable: bool = False


def count_object_rows(task: RowsTask) -> RowsResult:
    """Row counts of one object on both sides; a side that fails is reported, not raised
    (ConfigError when the worker has no identity does propagate)."""
    source, src_error = None, None
    if task.source is not None:
        try:
            reader = ConnectorReader(connector(task.source), task.source_key, task.source_size)
            source = count_rows(task.format, reader)
        except ConnectorError as exc:
            src_error = _describe(exc)
    identities = worker_identities(task.identity_env) if task.encrypt else None
    try:
        target = count_target_rows(
            connector(task.target), task.target_key, task.target_size, task.format, identities
        )
    except EncryptionError as exc:
        return RowsResult(source, None, src_error, str(exc), True)
    except ConnectorError as exc:
        return RowsResult(source, None, src_error, _describe(exc))
    return RowsResult(source, target, src_error)

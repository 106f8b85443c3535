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
- `check_small_objects`: both of the above for many small objects (at most
  `SMALL_OBJECT_BYTES` each) in one task, each side of each object read once (one ranged
  GET) and its age header unwrapped once; the same results as the two tasks above.

Memory: a task holds at most about 2 MiB (1 MiB plaintext pieces and their ciphertext), plus
what the row counter holds for one block (`counts.count_rows`, 4 MiB by default); a task of
small objects holds one object at a time: both sides and its plaintext, about 3 MiB.

Errors: a side that cannot be read or decrypted is reported in the result (the run goes on);
ConfigError (no identity on a worker) propagates and stops the run.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from bascule.age.header import parse_header_bytes, unwrap_header
from bascule.age.sizes import CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, NONCE_SIZE, encrypted_length
from bascule.age.stream import (
    AgeRangeReader,
    PayloadCipher,
    X25519Identity,
    load_identities,
)
from bascule.connectors.base import ByteRange, Connector
from bascule.endpoints import EndpointRef, connector
from bascule.errors import ConfigError, ConnectorError, EncryptionError
from bascule.migration.retry import call_with_retries
from bascule.verification.counts import CsvDialect, RowCount, count_rows

READ_CHUNKS = 16  # 1 MiB of plaintext per read: whole age chunks
ATTEMPTS = 3  # per side of a task, on errors the connector calls transient


class Readable(Protocol):
    """What the re-reads use of a connector: ranged reads, and its retry verdict."""

    def open_read(self, key: str, byte_range: ByteRange | None = None) -> BinaryIO: ...

    def should_retry(self, exc: BaseException) -> bool: ...


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


def _retrying(conn: Readable, fn: Callable[[], Any], attempts: int = ATTEMPTS) -> Any:
    if isinstance(conn, _Memory | _Failed):
        return fn()  # read already (its retries spent): no retry policy to build per call
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


def _read_source(task: ReadTask, conn: Readable) -> tuple[list[str], str | None, int]:
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
    header = parse_header_bytes(window)  # parsed once: unwrap_header takes it as it is
    length = len(header.raw)
    if length != task.header_len or len(window) < length + NONCE_SIZE:
        raise EncryptionError(
            f"the age header is {length} bytes, {task.header_len} expected (object replaced)"
        )
    identities = worker_identities(task.identity_env)
    return PayloadCipher(unwrap_header(header, identities), window[length : length + NONCE_SIZE])


def _head(task: ReadTask, conn: Readable) -> bytes:
    want = task.header_len + NONCE_SIZE
    with conn.open_read(task.target_key, ByteRange(0, want)) as stream:
        return bytes(stream.read(want))


def _read_target_part(
    task: ReadTask,
    conn: Readable,
    part: PartRange,
    cipher: PayloadCipher | None,
    plain: list[bytes] | None = None,
) -> tuple[_TargetPart, PayloadCipher | None]:
    """Hash the stored bytes of `part`, and decrypt them when encrypted (part 1 brings the
    header: no separate read). A decryption failure is kept in the result while the
    ciphertext is still hashed to the end. The plaintext is appended to `plain` if given."""
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
                if plain is not None:
                    plain.append(data)
            elif out.error is None and cipher is not None:
                try:
                    final = part.final and done == rng.length
                    opened = cipher.decrypt_chunks(index, data, final)
                except EncryptionError as exc:
                    out.error = str(exc)
                else:
                    out.plain.update(opened)
                    if plain is not None:
                        plain.append(opened)
            index += READ_CHUNKS
    return out, cipher


def _read_target(
    task: ReadTask, conn: Readable, plain: list[bytes] | None = None
) -> tuple[list[_TargetPart], int]:
    if plain is not None:
        plain.clear()  # a retry starts again
    cipher = None
    if task.encrypt and task.parts[0].number != 1:
        cipher = _cipher(task, _head(task, conn))
    parts = []
    for p in task.parts:
        out, cipher = _read_target_part(task, conn, p, cipher, plain)
        parts.append(out)
    total = sum(
        p.cipher_range(task.header_len).length if task.encrypt else p.length for p in task.parts
    )
    return parts, total


def read_parts(task: ReadTask) -> ReadResult:
    """Re-read the task's parts on both sides (see the module docstring). Never raises for a
    side that cannot be read; raises ConfigError when the worker has no identity."""
    src = connector(task.source) if task.source is not None else None
    return _read_parts(task, src, connector(task.target))


def _read_parts(
    task: ReadTask, src: Readable | None, tgt: Readable, plain: list[bytes] | None = None
) -> ReadResult:
    src_digests: list[str | None] = [None] * len(task.parts)
    md5, src_error, nbytes = None, None, 0
    if src is not None:
        try:
            found, md5, nbytes = _retrying(src, lambda: _read_source(task, src), task.attempts)
            src_digests = list(found)
        except ConnectorError as exc:
            src_error = _describe(exc)
    tgt_parts: list[_TargetPart] = []
    tgt_error, undecryptable = None, False
    try:
        tgt_parts, tgt_bytes = _retrying(tgt, lambda: _read_target(task, tgt, plain), task.attempts)
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

    def __init__(self, conn: Readable, key: str, size: int, attempts: int = ATTEMPTS) -> None:
        self._conn = conn
        self._key = key
        self._size = size
        self._attempts = attempts

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

        data: bytes = _retrying(self._conn, get, self._attempts)
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
    conn: Readable,
    key: str,
    size: int,
    fmt: str,
    identities: list[X25519Identity] | None,
    attempts: int = ATTEMPTS,
    csv: CsvDialect | None = None,
) -> RowCount:
    """Rows of one target object (`size` as stored); decrypted when `identities` are given.

    Raises EncryptionError (undecryptable) or ConnectorError (unreadable)."""
    raw = ConnectorReader(conn, key, size, attempts)
    if identities is None:
        return count_rows(fmt, raw, csv=csv)
    return count_rows(fmt, _AgeReader(AgeRangeReader(raw.read, size, identities)), csv=csv)


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
    attempts: int = ATTEMPTS  # per ranged read, on errors the connector calls transient
    csv: CsvDialect | None = None  # how the dataset's CSV files are written


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
    src = connector(task.source) if task.source is not None else None
    return _count_object_rows(task, src, connector(task.target))


def _count_object_rows(
    task: RowsTask, src: Readable | None, tgt: Readable, target_plain: bytes | None = None
) -> RowsResult:
    """`count_object_rows` through `src` and `tgt`; `target_plain`, when given, is the
    target's whole plaintext, already read and authenticated: counted as it is."""
    source, src_error = None, None
    if src is not None:
        try:
            reader = ConnectorReader(src, task.source_key, task.source_size, task.attempts)
            source = count_rows(task.format, reader, csv=task.csv)
        except ConnectorError as exc:
            src_error = _describe(exc)
    if target_plain is not None:
        target_rows = count_rows(task.format, _Bytes(target_plain), csv=task.csv)
        return RowsResult(source, target_rows, src_error)
    identities = worker_identities(task.identity_env) if task.encrypt else None
    try:
        target = count_target_rows(
            tgt, task.target_key, task.target_size, task.format, identities, task.attempts,
            task.csv,
        )  # fmt: skip
    except EncryptionError as exc:
        return RowsResult(source, None, src_error, str(exc), True)
    except ConnectorError as exc:
        return RowsResult(source, None, src_error, _describe(exc))
    return RowsResult(source, target, src_error)


class _Bytes:
    """A `counts.RangeReader` over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


# -- small objects: one read of each side for every check, many objects per task ------------

SMALL_OBJECT_BYTES = 1024 * 1024  # plaintext bytes at most: checked whole from one read
SMALL_BATCH_OBJECTS = 64  # small objects per task, at most
SMALL_BATCH_BYTES = 8 * 1024 * 1024  # bytes read per task (both sides), about


@dataclass(frozen=True)
class SmallCheck:
    """The checks of one small object, made from one read of each side: its full re-read
    (`read`, one part) and its row count (`rows`), either or both. `source_bytes` and
    `target_bytes`: how much of each side they read, from its start."""

    read: ReadTask | None
    rows: RowsTask | None
    source_bytes: int
    target_bytes: int


@dataclass(frozen=True)
class SmallResult:
    """What `read_parts` and `count_object_rows` would have returned for the object."""

    read: ReadResult | None
    rows: RowsResult | None


class _Memory:
    """The first bytes of an object, read once, served as its connector would serve them:
    ranged reads clipped at the end (the Connector contract), nothing to retry."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def open_read(self, key: str, byte_range: ByteRange | None = None) -> BinaryIO:
        if byte_range is None:
            return io.BytesIO(self._data)
        return io.BytesIO(self._data[byte_range.start : byte_range.end])

    def should_retry(self, exc: BaseException) -> bool:
        return False


class _Failed:
    """A side whose read failed (after its retries): every read raises that error again, so
    each check reports it as its own read would have."""

    def __init__(self, exc: ConnectorError) -> None:
        self._exc = exc

    def open_read(self, key: str, byte_range: ByteRange | None = None) -> BinaryIO:
        raise self._exc

    def should_retry(self, exc: BaseException) -> bool:
        return False


def check_small_objects(checks: tuple[SmallCheck, ...]) -> tuple[SmallResult, ...]:
    """The checks of several small objects, one after the other in one task (a task's own
    costs are paid once for all). Each object's two sides are read once, whatever the
    checks, and its age header unwrapped once; the results are those `read_parts` and
    `count_object_rows` give. Raises what they raise (ConfigError: no identity)."""
    found: dict[int, Connector] = {}  # by id: a batch's checks share their refs

    def conn(ref: EndpointRef) -> Connector:
        if id(ref) not in found:
            found[id(ref)] = connector(ref)
        return found[id(ref)]

    return tuple(_check_small(check, conn) for check in checks)


def _check_small(check: SmallCheck, conn: Callable[[EndpointRef], Connector]) -> SmallResult:
    task = check.read or check.rows
    assert task is not None
    attempts = task.attempts
    full_source = check.read is not None and check.read.source is not None
    src_ref = check.read.source if check.read and check.read.source else None
    if check.rows is not None:
        src_ref = src_ref or check.rows.source
    src = None
    if src_ref is not None:
        src = _fetch(conn(src_ref), task.source_key, check.source_bytes, attempts, full_source)
    tgt = _fetch(conn(task.target), task.target_key, check.target_bytes, attempts,
                 check.read is not None)  # fmt: skip
    read: ReadResult | None = None
    plain: list[bytes] = []
    if check.read is not None:
        read = _read_parts(check.read, src if full_source else None, tgt, plain)
    rows = None
    if check.rows is not None:
        whole = b"".join(plain) if read and _read_whole(check.read, check.rows, read) else None
        rows = _count_object_rows(check.rows, src if check.rows.source else None, tgt, whole)
    return SmallResult(read, rows)


def _fetch(conn: Connector, key: str, length: int, attempts: int, always: bool) -> Readable:
    """The first `length` bytes of `key` in one ranged read (none when `length` is 0, unless
    `always`: a full re-read asks even for nothing, as `read_parts` does)."""
    if length == 0 and not always:
        return _Memory(b"")

    def get() -> bytes:
        with conn.open_read(key, ByteRange(0, length)) as stream:
            return bytes(stream.read())

    try:
        return _Memory(_retrying(conn, get, attempts))
    except ConnectorError as exc:
        return _Failed(exc)


def _read_whole(read: ReadTask | None, rows: RowsTask, result: ReadResult) -> bool:
    """Whether the re-read decrypted (or read) the whole target as its row count would: no
    error, and the stored size the count would go by is the one the re-read read."""
    if read is None or result.target_error is not None:
        return False
    (part,) = read.parts
    stored = part.cipher_range(read.header_len).length if read.encrypt else part.length
    return rows.target_size == stored

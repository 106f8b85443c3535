"""Transfer of one part: ranged read (If-Match) -> SHA-256 -> encrypt -> SHA-256 -> write.

`run_part` is the task the executors run, in a thread pool or on Dask workers. A task carries
no secret: endpoints are named by config (environment variable names), and the object's file
key travels wrapped under the journal key, which each worker reads from its own disk or
environment (`BASCULE_JOURNAL_KEY_FILE` overrides the path in the task).

An object written in one request (`resume_token` None, no `key`) is one task end to end: the
task makes its own file key, nonce and header for the task's `recipients` (public keys), so the
coordinator does no per-object cryptography and nothing secret leaves the worker. Its file key
is never journaled: there is nothing to resume, a crash sends the object again.

Memory: the plaintext is streamed through in 1 MiB reads; one part holds at most its
ciphertext (part_size + 16 bytes per 64 KiB chunk) in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from bascule.age.sizes import CHUNK_SIZE
from bascule.connectors.base import (
    ByteRange,
    Connector,
    PartBytes,
    PartWriter,
    PartWriterOpener,
    PushReader,
    defers_sync,
    holds_folders,
    pushes_reads,
)
from bascule.endpoints import EndpointRef, connector
from bascule.errors import TransientStorageError, UnsupportedOperation
from bascule.migration.keywrap import KeyWrapper
from bascule.migration.plan import PartSpec
from bascule.migration.retry import call_with_retries

if TYPE_CHECKING:
    from bascule.age.stream import PayloadCipher, X25519Recipient

READ_SIZE = 16 * CHUNK_SIZE  # 1 MiB reads: whole age chunks, bounded memory
REUSE_FROM_BYTES = 1024 * 1024  # parts of this size or more are built in a reused buffer


@dataclass(frozen=True)
class ObjectKey:
    """The wrapped file key of one object, and where the worker finds the key to unwrap it."""

    wrapped: bytes
    context: str
    key_file: str


class PartTask(NamedTuple):
    """Everything a worker needs for one part; picklable, and free of secrets. A named
    tuple, as `PartResult`: one of each per small object, made and unpickled at a third of
    a frozen dataclass's cost (about 1.7 us less an object, each way)."""

    source: EndpointRef
    target: EndpointRef
    source_key: str
    target_key: str
    etag: str
    part: PartSpec
    encrypt: bool
    key: ObjectKey | None = None
    header: bytes = b""  # age header + payload nonce, prepended to part 1
    nonce: bytes = b""
    resume_token: str | None = None  # multipart upload; None: one whole-object put
    metadata: Mapping[str, str] = {}  # read only (Mapping), never changed
    # Encrypted and `key` None: the task makes the object's key material for these recipients.
    recipients: tuple[str, ...] = ()


class PartResult(NamedTuple):
    """One part as written: `cipher_sha256` is the SHA-256 of the bytes sent (the plaintext's
    when the dataset is not encrypted, the age header included in an encrypted part 1)."""

    number: int
    size: int
    cipher_size: int
    plain_sha256: str
    cipher_sha256: str
    etag: str


_wrappers: dict[str, KeyWrapper] = {}
_wrappers_lock = threading.Lock()


def _file_key(key: ObjectKey) -> bytes:
    path = os.environ.get("BASCULE_JOURNAL_KEY_FILE") or key.key_file
    with _wrappers_lock:
        wrapper = _wrappers.get(path)
        if wrapper is None:
            wrapper = _wrappers[path] = KeyWrapper.load(Path(path))
    return wrapper.unwrap(key.wrapped, key.context)


_parsed: dict[tuple[str, ...], Sequence[X25519Recipient]] = {}


def _cipher_for(task: PartTask) -> tuple[bytes, PayloadCipher]:
    """(bytes before the payload in part 1, the PayloadCipher) of an encrypted task."""
    from bascule.age import stream as age

    if task.key is not None:
        return task.header, age.PayloadCipher(_file_key(task.key), task.nonce)
    recipients = _parsed.get(task.recipients)  # atomic: the lock is for the first parse
    if recipients is None:
        with _wrappers_lock:
            recipients = _parsed.get(task.recipients)
            if recipients is None:
                parsed = age.parse_recipients(list(task.recipients))
                recipients = _parsed[task.recipients] = parsed
    material = age.new_file(recipients)
    return material.header + material.nonce, age.PayloadCipher(material.file_key, material.nonce)


def _read_into(stream: BinaryIO, view: memoryview, where: str) -> None:
    """Fill `view` from `stream` (straight into the caller's buffer, no copy)."""
    readinto = getattr(stream, "readinto", None)  # every io stream has it; BinaryIO says not
    pos = 0
    while pos < len(view):
        n = readinto(view[pos:]) if readinto is not None else _copy_read(stream, view[pos:])
        if not n:
            # A short body is a broken transfer, never a smaller part: retry it.
            raise TransientStorageError(
                f"source body ended after {pos} of {len(view)} bytes", connector=where
            )
        pos += n


def _copy_read(stream: BinaryIO, view: memoryview) -> int:
    data = stream.read(len(view))
    view[: len(data)] = data
    return len(data)


def _open_source(task: PartTask, src: Connector) -> BinaryIO:
    """The part's plaintext range, open (the caller closes it)."""
    part = task.part
    rng = ByteRange(part.plain_offset, part.plain_length)
    return src.open_read(task.source_key, rng, if_match=task.etag or None)


def _check_ended(stream: BinaryIO, src: Connector, task: PartTask) -> None:
    """A body longer than the planned range is refused (the range is re-read)."""
    if stream.read(1):
        raise TransientStorageError(
            "source sent more bytes than the planned range",
            connector=src.url,
            key=task.source_key,
        )


def build_part(task: PartTask, *, reused: bool = False) -> tuple[PartBytes, str, str]:
    """Read, hash, encrypt and hash one part; returns (bytes to write, SHA-256 of the
    plaintext, SHA-256 of the bytes to write), both in hex.

    The plaintext is read straight into place: unencrypted, into the buffer that is written
    (one pass of hashing, no copy); encrypted, 1 MiB at a time into one reused buffer, sealed
    from there into the buffer of the planned size. `reused`: that buffer is this thread's
    own, kept for its next part (a view of it is returned, valid until then): a part of
    16 MiB in fresh memory costs a page fault per 4 KiB, twice when copied to `bytes`."""
    part = task.part
    reused = reused and part.cipher_length >= REUSE_FROM_BYTES
    out = _thread_buffer("part", part.cipher_length) if reused else bytearray(part.cipher_length)
    view = memoryview(out)[: part.cipher_length]
    prefix, cipher = task.header, None
    if task.encrypt:
        prefix, cipher = _cipher_for(task)
    pos = len(prefix) if part.number == 1 and prefix else 0
    view[:pos] = prefix[:pos]
    src = connector(task.source)
    where = f"{src.url}/{task.source_key}"
    if part.plain_length and pushes_reads(src):
        plain_hex, pos = _pushed(src, where, task, cipher, view, pos)
    else:
        stream = _open_source(task, src)  # not a generator context: one per small object
        try:
            if cipher is None:
                body = view[pos : pos + part.plain_length]
                _read_into(stream, body, where)
                plain_hex = hashlib.sha256(body).hexdigest()
                pos += len(body)
            else:
                plain_hex, pos = _seal(stream, where, cipher, part, view, pos)
            _check_ended(stream, src, task)
        finally:
            stream.close()
    if pos != part.cipher_length:
        raise TransientStorageError(
            f"part {part.number} of {task.source_key} came to {pos} bytes, "
            f"{part.cipher_length} planned; the part is retried",
            connector=task.source.name,
            key=task.source_key,
        )
    cipher_hex = hashlib.sha256(view).hexdigest() if cipher is not None else plain_hex
    data: PartBytes = view
    if not reused:
        view.release()
        data = bytes(out)
        del out
    return data, plain_hex, cipher_hex


_local = threading.local()


def _thread_buffer(name: str, size: int) -> bytearray:
    """This thread's buffer `name`, of at least `size` bytes (grown, never shrunk: parts of
    one run share a size)."""
    found: bytearray | None = getattr(_local, name, None)
    if found is None or len(found) < size:
        setattr(_local, name, None)  # the old one goes before the new one is made
        found = bytearray(size)
        setattr(_local, name, found)
    return found


def _seal(
    stream: BinaryIO,
    where: str,
    cipher: PayloadCipher,
    part: PartSpec,
    out: memoryview,
    pos: int,
) -> tuple[str, int]:
    """Read the part's plaintext in READ_SIZE pieces (whole age chunks), hash it and seal it
    into `out` from `pos`; (plaintext SHA-256, position after the last chunk). An empty part
    (a 0-byte object) still gets its empty final chunk."""
    plain_hash = hashlib.sha256()
    staging = memoryview(_thread_buffer("staging", READ_SIZE))[: min(READ_SIZE, part.plain_length)]
    chunk_index, left = part.first_chunk, part.plain_length
    if not left:
        return plain_hash.hexdigest(), pos + cipher.encrypt_chunks_into(0, b"", True, out[pos:])
    while left:
        piece = staging[: min(READ_SIZE, left)]
        _read_into(stream, piece, where)
        plain_hash.update(piece)
        left -= len(piece)
        pos += cipher.encrypt_chunks_into(chunk_index, piece, not left and part.final, out[pos:])
        chunk_index += -(-len(piece) // CHUNK_SIZE)
    return plain_hash.hexdigest(), pos


def _pushed(
    src: PushReader,
    where: str,
    task: PartTask,
    cipher: PayloadCipher | None,
    out: memoryview,
    pos: int,
) -> tuple[str, int]:
    """The part's plaintext read with `read_to` (no stream between the network and `out`):
    (plaintext SHA-256, position in `out` after it)."""
    part = task.part
    sink: _PlainSink | _SealSink
    if cipher is None:
        sink = _PlainSink(out[pos : pos + part.plain_length], where)
    else:
        sink = _SealSink(cipher, part, out, pos, where)
    rng = ByteRange(part.plain_offset, part.plain_length)
    src.read_to(task.source_key, rng, sink, if_match=task.etag or None)
    return sink.finish()


def _too_long(where: str) -> TransientStorageError:
    return TransientStorageError("source sent more bytes than the planned range", connector=where)


def _short(where: str, got: int, planned: int) -> TransientStorageError:
    # A short body is a broken transfer, never a smaller part: retry it.
    return TransientStorageError(
        f"source body ended after {got} of {planned} bytes", connector=where
    )


class _PlainSink:
    """Pieces of an unencrypted part, copied into place in the buffer that is written."""

    def __init__(self, body: memoryview, where: str) -> None:
        self._body = body
        self._where = where
        self._pos = 0

    def __call__(self, piece: bytes) -> None:
        end = self._pos + len(piece)
        if end > len(self._body):
            raise _too_long(self._where)
        self._body[self._pos : end] = piece
        self._pos = end

    def finish(self) -> tuple[str, int]:
        if self._pos != len(self._body):
            raise _short(self._where, self._pos, len(self._body))
        return hashlib.sha256(self._body).hexdigest(), len(self._body)


class _SealSink:
    """Pieces of a part to encrypt, gathered READ_SIZE at a time (whole age chunks) in this
    thread's staging buffer, then hashed and sealed into `out`, as `_seal` does."""

    def __init__(
        self, cipher: PayloadCipher, part: PartSpec, out: memoryview, pos: int, where: str
    ) -> None:
        self._cipher = cipher
        self._part = part
        self._out = out
        self._pos = pos
        self._where = where
        self._hash = hashlib.sha256()
        self._staging = memoryview(_thread_buffer("staging", READ_SIZE))
        self._fill = 0
        self._left = part.plain_length  # plaintext not sealed yet
        self._chunk = part.first_chunk

    def __call__(self, piece: bytes) -> None:
        view = memoryview(piece)
        while len(view):
            want = min(READ_SIZE, self._left) - self._fill
            if want <= 0:
                raise _too_long(self._where)
            take = min(want, len(view))
            self._staging[self._fill : self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if take == want:
                self._seal()

    def _seal(self) -> None:
        piece = self._staging[: self._fill]
        self._hash.update(piece)
        self._left -= len(piece)
        final = not self._left and self._part.final
        self._pos += self._cipher.encrypt_chunks_into(
            self._chunk, piece, final, self._out[self._pos :]
        )
        self._chunk += -(-len(piece) // CHUNK_SIZE)
        self._fill = 0

    def finish(self) -> tuple[str, int]:
        if self._left:
            planned = self._part.plain_length
            raise _short(self._where, planned - self._left + self._fill, planned)
        return self._hash.hexdigest(), self._pos


_writers: dict[tuple[str, str, str], PartWriter] = {}


def _writer(target: PartWriterOpener, task: PartTask) -> PartWriter:
    """The process's writer for this upload: reattaching checks the upload once, not once
    per part."""
    assert task.resume_token is not None
    key = (task.target.cache_key, task.target_key, task.resume_token)
    with _wrappers_lock:
        found = _writers.get(key)
    if found is None:
        found = target.open_writer(task.target_key, task.metadata, task.resume_token, check=False)
        with _wrappers_lock:
            if len(_writers) > 1024:
                _writers.clear()
            _writers[key] = found
    return found


def run_part(task: PartTask, *, deferred: bool = False) -> PartResult:
    """Transfer one part. Raises ConnectorError subclasses (PreconditionFailed when the source
    changed since it was planned); the coordinator decides about retries. `deferred`: a
    whole-object put on a `DeferredSync` target is left for the caller's `sync`."""
    data, plain_hex, cipher_hex = build_part(task, reused=task.resume_token is not None)
    target = connector(task.target)
    if task.resume_token is None:
        body = io.BytesIO(data)
        if deferred and defers_sync(target):
            info = target.put_unsynced(task.target_key, body, len(data), task.metadata)
        else:
            sha256 = bytes.fromhex(cipher_hex)  # of `data`: a target may send it as is
            info = target.put(task.target_key, body, len(data), task.metadata, sha256=sha256)
        etag = info.etag
    else:
        if not isinstance(target, PartWriterOpener):
            raise UnsupportedOperation(
                "target cannot write parts", connector=target.url, key=task.target_key
            )
        writer = _writer(target, task)
        sha256 = bytes.fromhex(cipher_hex)
        etag = writer.write_part(task.part.number, data, sha256=sha256).etag
    part = task.part
    return PartResult(part.number, part.plain_length, len(data), plain_hex, cipher_hex, etag)


def composite(hex_digests: list[str]) -> str:
    """SHA-256 over the parts' SHA-256 digests, suffixed with the part count (like S3's)."""
    joined = b"".join(bytes.fromhex(h) for h in hex_digests)
    return f"{hashlib.sha256(joined).hexdigest()}-{len(hex_digests)}"


class PartFailed(Exception):
    """A part failed for good: `error` is the last error, unchanged, and `attempts` how many
    attempts this task spent on it (the coordinator charges them to the journal's budget).

    Raised by `run_part_with_retries` only, from a thread or a Dask worker (it pickles);
    the coordinator unwraps it and never lets it out."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(error, attempts)
        self.error = error
        self.attempts = attempts

    def __str__(self) -> str:
        return f"{self.error} (after {self.attempts} attempt(s))"


def run_part_with_retries(
    task: PartTask, attempts_left: int, *, deferred: bool = False
) -> tuple[PartResult, int]:
    """`run_part` retried on transient errors (the connectors decide which), at most
    `attempts_left` attempts. Returns the result and the attempts it took; once the budget
    is spent, or on an error not worth retrying, raises PartFailed with the attempts made."""
    target = connector(task.target)
    source = connector(task.source)
    attempts = 0

    def should_retry(exc: BaseException) -> bool:
        return source.should_retry(exc) or target.should_retry(exc)

    def attempt() -> PartResult:
        nonlocal attempts
        attempts += 1
        return run_part(task, deferred=deferred)

    try:
        return call_with_retries(attempt, should_retry, attempts_left)
    except Exception as exc:  # every failure, a bug's too: it is wrapped, never replaced
        raise PartFailed(exc, attempts) from exc


ObjectOutcome = tuple[PartResult, int] | PartFailed


# Batches whose every store is `latency_free` take this lock, so a process runs one at a
# time: their work holds the GIL between system calls of microseconds, and threads taking
# turns for it cost more than they overlap (20,000 tiny files, local disk to local disk,
# 8 threads: 18.6 s and 20.2 CPU s; the same batches one at a time: 9.3 s and 9.1 CPU s).
# The flush after a batch (`_sync_targets`) waits on the disk, and runs outside it; a
# retry's backoff waits inside it (local errors worth a retry, EAGAIN/EINTR/EBUSY, are rare).
_latency_free_batches = threading.Lock()


def run_objects(tasks: Sequence[PartTask], attempts_left: int) -> list[ObjectOutcome]:
    """Several objects written in one request each, as one task: per object what
    `run_part_with_retries` returns, or the PartFailed it raises (one object failing does not
    fail the others). Small objects cost less this way: one dispatch, one result message and,
    on a `DeferredSync` target, one flush for the whole batch instead of one per object. A
    result comes back only once its object is durable: if the flush fails, every object of
    the batch is reported failed (and sent again)."""
    outcomes: list[ObjectOutcome] = []
    connectors = _connectors(tasks)
    latency_free = all(c.capabilities.latency_free for c in connectors)
    gate = _latency_free_batches if latency_free else contextlib.nullcontext()
    with gate, contextlib.ExitStack() as held:
        for conn in connectors:
            if holds_folders(conn):  # each folder opened once per batch, not per object
                held.enter_context(conn.holding_folders())
        for task in tasks:
            try:
                outcomes.append(run_part_with_retries(task, attempts_left, deferred=True))
            except PartFailed as failed:
                outcomes.append(failed)
    _sync_targets(tasks, outcomes, attempts_left)
    return outcomes


def _connectors(tasks: Sequence[PartTask]) -> list[Connector]:
    """Every source and target of the batch, once each."""
    refs = {ref.cache_key: ref for task in tasks for ref in (task.source, task.target)}
    return [connector(ref) for ref in refs.values()]


def _sync_targets(
    tasks: Sequence[PartTask], outcomes: list[ObjectOutcome], attempts_left: int
) -> None:
    """Flush the `DeferredSync` targets the batch wrote to; on failure, its written objects
    become failures (their journal rows are never written)."""
    refs = {t.target.cache_key: t.target for t, o in zip(tasks, outcomes, strict=True)
            if not isinstance(o, PartFailed)}  # fmt: skip
    for ref in refs.values():
        target = connector(ref)
        should_retry = target.should_retry
        if not defers_sync(target):
            continue
        try:
            call_with_retries(target.sync, should_retry, attempts_left)
        except Exception as exc:  # every failure, a bug's too: it is wrapped, never replaced
            for i, (task, outcome) in enumerate(zip(tasks, outcomes, strict=True)):
                if task.target.cache_key == ref.cache_key and not isinstance(outcome, PartFailed):
                    outcomes[i] = PartFailed(exc, outcome[1])

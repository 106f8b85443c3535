"""The storage contract every connector implements (modelled on rclone's `fs.Fs`).

A `Connector` is bound to one container or bucket (and nothing else): keys are relative to
it. Optional capabilities are separate `runtime_checkable` Protocols, checked with
`isinstance`:

- `PartWriterOpener`: multipart writes that survive a restart (S3 multipart upload, Azure
  staged blocks). The backend's own handle (upload id, block ids) never leaves the
  connector: callers see an opaque `resume_token` they may store and hand back.
- `DeferredSync`: writes made durable in batches (`put_unsynced`, then `sync`): a local file
  system, where one flush per object costs more than the copy of a small one.
- `PushReader`: a range read handed to a callback as it arrives (`read_to`), for the data
  path's remote reads, where a stream between the network and the caller costs a copy and
  a thread hand-off per batch.
- `RangeCopier`: a part of such an upload copied by the server from a byte range of an
  object already stored (S3 UploadPartCopy), so the bytes never travel through the client.
  Declared by `Capabilities.range_copy`: a connector may have the method and still say no
  (a server that does not implement the request).

Keys: `Connector.key_problem` says, before anything is written, whether the backend can store
a key as it is; `plan` asks it for every target key. The rules every backend shares, and the
path rules of backends whose keys become file paths, are the helpers below
(`object_key_problem`, `path_key_problem`); connectors whose keys become paths also refuse,
on every call, a key these rules reject (`refuse_key`).

Errors (httpx's `map_exceptions`, in spirit): a connector catches its SDK's own exception
types only (plus the OS and subprocess errors it meets) and maps them, in a single function
per connector, to `bascule.errors.ConnectorError` subclasses: a provider's error code first,
then the HTTP status through `STATUS_ERRORS`, the one table every HTTP-speaking connector
shares. Anything else (a `TypeError`, an `AttributeError`) is a bug and propagates unchanged:
the CLI prints it as one "bug" line, and its traceback with ``--debug``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import BinaryIO, Protocol, TypeGuard, runtime_checkable

from bascule.errors import (
    AccessDenied,
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
    Throttled,
    TransientStorageError,
    UnsupportedOperation,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# Bytes in one file name on the usual Linux filesystems (NAME_MAX).
NAME_MAX_BYTES = 255
# What a part writer is handed: bytes, or a view of a buffer its caller reuses.
PartBytes = bytes | bytearray | memoryview
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)")


def display_key(key: str) -> str:
    """`key` as it can be printed: a file name that was not UTF-8 (decoded with
    surrogateescape) shows its raw bytes as ``\\xNN`` instead of breaking the output."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def object_key_problem(key: str, max_bytes: int = 1024) -> str | None:
    """What no target of bascule can store (None when `key` is fine), as "what; what to do".

    Every key must be non-empty UTF-8 (the journal and every provider hold UTF-8), hold no
    NUL, and have no "." or ".." segment (HTTP clients, rclone and file systems resolve them
    away, so the object would land under another name, or outside its folder). `max_bytes` is
    the backend's limit on the key's UTF-8 length."""
    if not key:
        return "the key is empty; rename the object"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "the name is not valid UTF-8 (another encoding?); rename it in UTF-8"
    if "\x00" in key:
        return "the key holds a NUL character; rename it"
    if "." in key and _DOT_SEGMENT.search(key):
        return "a '.' or '..' path segment would be resolved away; rename it"
    if size > max_bytes:
        return (
            f"the key is {size} bytes, above the target's {max_bytes}; "
            "shorten the target prefix or rename the source object"
        )
    return None


def path_key_problem(
    key: str,
    *,
    reserved: Sequence[str] = (),
    max_bytes: int = 1024,
    max_segment_bytes: int = NAME_MAX_BYTES,
) -> str | None:
    """`object_key_problem`, plus the rules of keys that become file paths: no empty segment
    (a leading, doubled or trailing "/"), each segment at most `max_segment_bytes` in UTF-8,
    and a first segment that is not one of the backend's `reserved` folders."""
    problem = object_key_problem(key, max_bytes)
    if problem is not None:
        return problem
    if key.startswith("/") or key.endswith("/") or "//" in key:
        return "an empty path segment (a leading, doubled or trailing '/'); rename it"
    segments = key.split("/")
    fits = len(key) <= max_segment_bytes and key.isascii()  # then every segment fits too
    longest = 0 if fits else max(len(segment.encode("utf-8")) for segment in segments)
    if longest > max_segment_bytes:
        return (
            f"a path segment is {longest} bytes, above the file system's {max_segment_bytes}; "
            "rename it"
        )
    if segments[0] in reserved:
        return f"'{segments[0]}' is a folder bascule reserves on this target; rename it"
    return None


def refuse_key(url: str, key: str, problem: str) -> UnsupportedOperation:
    """The error for a call on a key its connector cannot store (permanent: never retried)."""
    return UnsupportedOperation(
        f"{url}/{display_key(key)} cannot be stored: {problem}", connector=url, key=key
    )


@dataclass(frozen=True)
class ByteRange:
    """`length` bytes starting at `start` (end exclusive = start + length)."""

    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length

    def __post_init__(self) -> None:
        if self.start < 0 or self.length < 0:
            raise ValueError(f"invalid byte range start={self.start} length={self.length}")


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or stat says of one object.

    `etag` is opaque (quotes stripped); S3 multipart etags are not MD5s.
    `checksums` holds what the provider reports, by lowercase algorithm name:
    ``content-md5`` (base64, as Azure and S3 give it), ``crc64nvme``, ``sha256``, ...
    `metadata` is user metadata (lowercase keys).
    """

    key: str
    size: int
    etag: str = ""
    last_modified: datetime | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PartReceipt:
    """One written part, as the target acknowledged it. `number` starts at 1. `sha256`: the
    hex SHA-256 of the part's bytes, where the caller has it (the journal's): a target
    that lists part checksums when it commits takes it where the target reports none."""

    number: int
    size: int
    etag: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class PendingUpload:
    """An unfinished multipart upload found on the target (an orphan candidate)."""

    key: str
    resume_token: str
    initiated: datetime | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do; the executor and the tests read these, never the type."""

    resumable_parts: bool = False  # PartWriterOpener available and survives a restart
    if_match_read: bool = False  # open_read honours if_match (else: compared after stat)
    server_side_checksums: bool = False  # provider reports checksums we may compare
    # `list` yields keys strictly ascending in code point (= UTF-8 byte) order on every
    # backend of this kind; else the plan sorts the listing itself, on disk (bounded memory).
    sorted_listing: bool = False
    min_part_size: int = 0  # every part but the last must be at least this big
    max_part_size: int = 5 * GiB
    max_parts: int = 10_000
    max_object_size: int = 5 * 1024 * GiB
    max_key_bytes: int = 1024
    # A part number written again with different bytes replaces the earlier write (a retry
    # rewrites the same bytes, which every part writer accepts).
    part_rewrite: bool = False
    range_copy: bool = False  # RangeCopier available and implemented by the server
    # Its calls return without waiting on a network (a local disk, memory): the task code
    # then runs its batches of small objects one at a time per process (`run_objects`).
    latency_free: bool = False


# --- errors -------------------------------------------------------------------------------

# What an HTTP status says, for every connector that speaks HTTP (S3, Azure, rclone's S3
# remotes). A provider's error code, where known, is more precise and is read first (404
# NoSuchBucket is ContainerNotFound, 400 RequestTimeout is transient). Any other 5xx is
# transient; any other status says nothing specific (the connector's plain ConnectorError).
STATUS_ERRORS: Mapping[int, type[ConnectorError]] = MappingProxyType(
    {
        401: AccessDenied,  # no or expired credentials
        403: AccessDenied,  # wrong key or signature, or a policy refusing the action
        404: ObjectNotFound,  # the container's own 404 is told apart by its error code
        412: PreconditionFailed,  # If-Match on a stale etag
        429: Throttled,  # too many requests: back off
        501: UnsupportedOperation,  # the server does not implement the request
        503: Throttled,  # S3 SlowDown, Azure ServerBusy: back off
    }
)


def status_error(status: int) -> type[ConnectorError] | None:
    """The class HTTP `status` maps to (see `STATUS_ERRORS`), or None if it says nothing."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    return TransientStorageError if status >= 500 else None


@dataclass(frozen=True)
class ErrorWording:
    """How one connector words its mapped errors: what happened, where, and what to do."""

    service: str  # "S3", "Azure", "rclone"
    container: str  # what the container is called: "bucket", "container", "remote"
    credentials: str  # what to check when access is denied

    def error(
        self,
        cls: type[ConnectorError],
        url: str,
        key: str,
        detail: str,
        retry_after_s: float | None = None,
    ) -> ConnectorError:
        """An error of class `cls` about `url`/`key`; `detail` is the provider's own words."""
        where = f"{url}/{key}" if key else url
        if cls is Throttled:
            message = f"{where} is throttled ({detail}); backing off"
            return Throttled(message, connector=url, key=key, retry_after_s=retry_after_s)
        if cls is ContainerNotFound:
            message = f"{self.container} {url} does not exist ({detail}); create it or fix the name"
            return ContainerNotFound(message, connector=url)
        messages: dict[type[ConnectorError], str] = {
            ObjectNotFound: f"{where} does not exist ({detail})",
            AccessDenied: f"access denied to {where} ({detail}); check {self.credentials}",
            PreconditionFailed: (
                f"{where} changed since it was planned ({detail}); re-plan the object"
            ),
            UnsupportedOperation: f"{where}: the server does not support this request ({detail})",
            TransientStorageError: f"{where}: server error ({detail}); retry",
        }
        default = f"{self.service} request for {where} failed ({detail})"
        return cls(messages.get(cls, default), connector=url, key=key)

    def network_error(self, url: str, key: str, exc: BaseException) -> ConnectorError:
        """A request that got no answer (refused, reset, timed out): worth retrying. A server
        certificate that does not verify is permanent: retrying meets the same certificate."""
        where = f"{url}/{key}" if key else url
        if _certificate_failure(exc):
            return ConnectorError(
                f"the TLS certificate of {self.service} at {where} is not trusted ({exc}); set "
                "the endpoint's ca_bundle: to the PEM file of the CA that signed it",
                connector=url,
                key=key,
            )
        return TransientStorageError(
            f"network error talking to {where}: {exc}; retry", connector=url, key=key
        )


def _certificate_failure(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is a failed certificate check
    (the SDKs wrap ssl's error in their own classes, some only in the message)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if (
            isinstance(seen, ssl.SSLCertVerificationError)
            or getattr(seen, "certificate_failure", False)  # the data path's NetworkError
            or "CERTIFICATE_VERIFY_FAILED" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Connector(Protocol):
    """One bucket or container. Keys are relative to it; "/" separates path segments."""

    @property
    def url(self) -> str:
        """Where this connector points, e.g. ``s3://bucket`` (never carries a secret)."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, lazily, page by page; in key order
        where `capabilities.sorted_listing` (the plan sorts other listings itself).

        Raises ContainerNotFound if the bucket or container does not exist."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Raises ObjectNotFound if `key` does not exist."""
        ...

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        """A stream of the object's bytes (or of `byte_range` of them).

        With `if_match`, raises PreconditionFailed if the object's etag differs (where
        `capabilities.if_match_read`; elsewhere the argument is checked against a stat).
        A range past the end is clipped to the object; the caller checks lengths."""
        ...

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        """Write a whole object in one request (small objects, or backends without parts).

        `sha256`: the SHA-256 digest of the `size` bytes, where the caller computed it
        already. A connector whose writes carry a SHA-256 checksum sends it instead of
        hashing the bytes again (the server checks it: a wrong one fails the write); the
        others ignore it."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    def should_retry(self, exc: BaseException) -> bool:
        """Whether `exc` is worth retrying (throttling, 5xx, resets); never for 4xx."""
        ...

    def key_problem(self, key: str) -> str | None:
        """Why this backend cannot store `key` as it is ("what; what to do"), or None.

        Asked by `plan` for every target key, so that nothing is written for a dataset holding
        a key the target would refuse, rename or resolve elsewhere. Makes no request."""
        ...


_IMPLEMENTS: dict[tuple[type, str], bool] = {}


def _implements(cls: type, protocol: type, name: str) -> bool:
    found = _IMPLEMENTS.get((cls, name))
    if found is None:
        found = _IMPLEMENTS[(cls, name)] = issubclass(cls, protocol)
    return found


def defers_sync(conn: object) -> TypeGuard[DeferredSync]:
    """`isinstance(conn, DeferredSync)`, answered once per class (a runtime protocol check
    costs tens of microseconds: too much once per small object)."""
    return _implements(type(conn), DeferredSync, "DeferredSync")


@runtime_checkable
class DeferredSync(Protocol):
    """A connector whose writes may sit in a cache (a local file system) until flushed: many
    objects written with `put_unsynced`, then one `sync`, cost one flush instead of one per
    object. Remote stores never need this (a 2xx answer means the object is stored)."""

    def put_unsynced(
        self, key: str, data: BinaryIO, size: int, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """`Connector.put`, durable only after the next `sync`."""
        ...

    def sync(self) -> None:
        """Make every write completed so far durable."""
        ...


def holds_folders(conn: object) -> TypeGuard[FolderHolder]:
    """`isinstance(conn, FolderHolder)`, answered once per class (see `defers_sync`)."""
    return _implements(type(conn), FolderHolder, "FolderHolder")


@runtime_checkable
class FolderHolder(Protocol):
    """A connector on a file system that can keep the folders it opens while a batch of
    objects runs in one thread, instead of opening them again for each object."""

    def holding_folders(self) -> AbstractContextManager[None]:
        """Keep what this thread opens until exit; then close it."""
        ...


def pushes_reads(conn: object) -> TypeGuard[PushReader]:
    """`isinstance(conn, PushReader)`, answered once per class (see `defers_sync`)."""
    return _implements(type(conn), PushReader, "PushReader")


Sink = Callable[[bytes], None]


@runtime_checkable
class PushReader(Protocol):
    """A connector that hands a range's bytes to a callback as they arrive, in the calling
    thread: no stream and no thread in between, one copy fewer per byte (the bytes go
    from the network library's buffer to the caller's own, a part's buffer)."""

    def read_to(
        self, key: str, byte_range: ByteRange, sink: Sink, if_match: str | None = None
    ) -> None:
        """`sink(piece)` for the range's bytes, in order, the way `open_read(key,
        byte_range, if_match)` would return them: the same errors, the ETag checked before
        the first byte reaches `sink`, a range past the end clipped. An exception `sink`
        raises stops the transfer and comes out of `read_to` unchanged. A transfer cut
        midway raises after some pieces were handed over: the caller discards them."""
        ...


@runtime_checkable
class SkipReporter(Protocol):
    """A connector whose `list` leaves out folders on purpose (its own reserved folders)."""

    def skipped(self, prefix: str = "") -> list[str]:
        """The folders under `prefix` that `list` does not walk, each ending in "/"."""
        ...


class PartWriter(Protocol):
    """An unfinished object being written part by part.

    Parts may be written in any order and rewritten (the last write of a number wins).
    Nothing is visible under the key until `commit`."""

    @property
    def resume_token(self) -> str:
        """Opaque; hand it back to `PartWriterOpener.open_writer` to resume after a crash."""
        ...

    def write_part(
        self, number: int, data: PartBytes, *, sha256: bytes | None = None
    ) -> PartReceipt:
        """Write part `number`. `data` is valid only during the call (the caller reuses its
        buffer): a writer that keeps the bytes copies them. `sha256`: as for
        `Connector.put`, the digest of `data`."""
        ...

    def list_parts(self) -> list[PartReceipt]:
        """The parts the target holds for this upload, by number."""
        ...

    def commit(self, parts: Sequence[PartReceipt]) -> ObjectInfo:
        """Publish the object made of `parts`, in order. Raises ConnectorError if one is
        missing on the target."""
        ...

    def abort(self) -> None:
        """Drop every written part; nothing stays behind (no orphan)."""
        ...


@runtime_checkable
class PartWriterOpener(Protocol):
    def open_writer(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,
        resume_token: str | None = None,
        *,
        check: bool = True,
    ) -> PartWriter:
        """Start a new upload of `key`, or with `resume_token` reattach to an unfinished one.

        Resuming an upload the target no longer has raises ObjectNotFound. With
        `check=False` the reattach makes no request (the caller knows the upload exists: it
        opened it, e.g. a worker writing one part); a missing upload then fails at
        `write_part` or `commit`. Azure needs this: a fresh upload with no block staged yet
        cannot be told from one that is gone."""
        ...

    def list_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        """Unfinished uploads under `prefix` (orphans after a crash)."""
        ...

    def abort_upload(self, key: str, resume_token: str) -> None:
        """Abort one unfinished upload; an upload already gone is not an error."""
        ...


@runtime_checkable
class RangeCopier(Protocol):
    def copy_part(
        self,
        key: str,
        resume_token: str,
        number: int,
        source_key: str,
        byte_range: ByteRange,
        if_match: str,
    ) -> PartReceipt:
        """Part `number` of the unfinished upload of `key` (`resume_token`) becomes
        `byte_range` of `source_key` as stored, copied by the server (the source may be
        `key` itself: it stays readable until the upload commits).

        Raises PreconditionFailed if `source_key`'s etag is not `if_match`, and
        UnsupportedOperation where the server does not implement the copy."""
        ...

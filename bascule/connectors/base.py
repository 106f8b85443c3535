"""The storage contract every connector implements (modelled on rclone's `fs.Fs`).

A `Connector` is bound to one container or bucket (and nothing else): keys are relative to
it. Optional capabilities are separate `runtime_checkable` Protocols, checked with
`isinstance`:

- `PartWriterOpener`: multipart writes that survive a restart (S3 multipart upload, Azure
  staged blocks). The backend's own handle (upload id, block ids) never leaves the
  connector: callers see an opaque `resume_token` they may store and hand back.
- `RangeCopier`: a part of such an upload copied by the server from a byte range of an
  object already stored (S3 UploadPartCopy), so the bytes never travel through the client.
  Declared by `Capabilities.range_copy`: a connector may have the method and still say no
  (a server that does not implement the request).

Errors: every method raises only `bascule.errors.ConnectorError` subclasses; SDK exceptions
are mapped at the connector boundary, in a single function per connector.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


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
    """One written part, as the target acknowledged it. `number` starts at 1."""

    number: int
    size: int
    etag: str = ""


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
    min_part_size: int = 0  # every part but the last must be at least this big
    max_part_size: int = 5 * GiB
    max_parts: int = 10_000
    max_object_size: int = 5 * 1024 * GiB
    max_key_bytes: int = 1024
    range_copy: bool = False  # RangeCopier available and implemented by the server


class Connector(Protocol):
    """One bucket or container. Keys are relative to it; "/" separates path segments."""

    @property
    def url(self) -> str:
        """Where this connector points, e.g. ``s3://bucket`` (never carries a secret)."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, lazily, page by page, in key order.

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
        self, key: str, data: BinaryIO, size: int, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Write a whole object in one request (small objects, or backends without parts)."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    def should_retry(self, exc: BaseException) -> bool:
        """Whether `exc` is worth retrying (throttling, 5xx, resets); never for 4xx."""
        ...


class PartWriter(Protocol):
    """An unfinished object being written part by part.

    Parts may be written in any order and rewritten (the last write of a number wins).
    Nothing is visible under the key until `commit`."""

    @property
    def resume_token(self) -> str:
        """Opaque; hand it back to `PartWriterOpener.open_writer` to resume after a crash."""
        ...

    def write_part(self, number: int, data: bytes) -> PartReceipt: ...

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

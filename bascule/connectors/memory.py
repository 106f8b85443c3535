"""An in-process connector: one dict of objects, with resumable part writers.

For unit tests of the executor and the plan: it follows the contract exactly (lazy paged
listing in key order, etags, If-Match, parts in any order, orphan listing) without a
server. Thread-safe (one lock); nothing survives the process.
"""

from __future__ import annotations

import base64
import bisect
import builtins
import hashlib
import io
import itertools
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO

from bascule.connectors.base import (
    ByteRange,
    Capabilities,
    ObjectInfo,
    PartBytes,
    PartReceipt,
    PendingUpload,
    object_key_problem,
)
from bascule.errors import (
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
)

DEFAULT_LIST_PAGE_SIZE = 1000


@dataclass
class _Object:
    data: bytes
    info: ObjectInfo


@dataclass
class _Upload:
    key: str
    metadata: dict[str, str]
    initiated: datetime
    parts: dict[int, bytes] = field(default_factory=dict)


def _etag_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class MemoryConnector:
    """A container held in memory. `exists=False` models a missing container: every call
    raises ContainerNotFound. `list_pages_fetched` counts listing pages served."""

    def __init__(
        self, *, exists: bool = True, list_page_size: int = DEFAULT_LIST_PAGE_SIZE
    ) -> None:
        self._exists = exists
        self._lock = threading.Lock()
        self._objects: dict[str, _Object] = {}
        self._uploads: dict[str, _Upload] = {}
        self._serial = itertools.count(1)
        self.list_page_size = list_page_size
        self.list_pages_fetched = 0
        self._url = f"memory://{uuid.uuid4().hex[:8]}"

    @property
    def url(self) -> str:
        return self._url

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            resumable_parts=True,
            if_match_read=True,
            server_side_checksums=True,
            part_rewrite=True,
            sorted_listing=True,
        )

    def _check_container(self) -> None:
        if not self._exists:
            raise ContainerNotFound(
                f"container {self.url} does not exist; create it first", connector=self.url
            )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check_container()
        return self._pages(prefix)

    def _pages(self, prefix: str) -> Iterator[ObjectInfo]:
        after = ""
        first = True
        while True:
            page = self._page(prefix, after, first)
            first = False
            yield from page
            if len(page) < self.list_page_size:
                return
            after = page[-1].key

    def _page(self, prefix: str, after: str, first: bool) -> builtins.list[ObjectInfo]:
        # One "request": a snapshot of at most list_page_size keys after `after`.
        with self._lock:
            self.list_pages_fetched += 1
            keys = sorted(self._objects)
            start = bisect.bisect_left(keys, prefix) if first else bisect.bisect_right(keys, after)
            page: builtins.list[ObjectInfo] = []
            for key in keys[start:]:
                if not key.startswith(prefix) or len(page) == self.list_page_size:
                    break
                page.append(self._objects[key].info)
            return page

    def stat(self, key: str) -> ObjectInfo:
        return self._get(key).info

    def _get(self, key: str) -> _Object:
        self._check_container()
        with self._lock:
            obj = self._objects.get(key)
        if obj is None:
            raise ObjectNotFound(f"{self.url}/{key} does not exist", connector=self.url, key=key)
        return obj

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        obj = self._get(key)
        if if_match is not None and if_match != obj.info.etag:
            raise PreconditionFailed(
                f"{self.url}/{key} changed: etag {obj.info.etag}, expected {if_match}; "
                "re-plan the object",
                connector=self.url,
                key=key,
            )
        data = obj.data
        if byte_range is not None:
            data = data[byte_range.start : byte_range.end]
        return io.BytesIO(data)

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        self._check_container()
        return self._store(key, data.read(size), dict(metadata or {}))

    def _store(self, key: str, payload: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        md5 = hashlib.md5(payload, usedforsecurity=False)
        info = ObjectInfo(
            key=key,
            size=len(payload),
            etag=f"{md5.hexdigest()}-{next(self._serial)}",  # changes on every write
            last_modified=datetime.now(UTC),
            checksums={"content-md5": base64.b64encode(md5.digest()).decode()},
            metadata={k.lower(): v for k, v in metadata.items()},
        )
        with self._lock:
            self._objects[key] = _Object(payload, info)
        return info

    def delete(self, key: str) -> None:
        self._check_container()
        with self._lock:
            self._objects.pop(key, None)

    def should_retry(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectorError) and exc.retryable

    def key_problem(self, key: str) -> str | None:
        """S3's rules (the store this one stands in for): see `object_key_problem`."""
        return object_key_problem(key, self.capabilities.max_key_bytes)

    # --- PartWriterOpener ----------------------------------------------------------------

    def open_writer(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,
        resume_token: str | None = None,
        *,
        check: bool = True,
    ) -> MemoryPartWriter:
        """Start an upload, or reattach to one by token (ObjectNotFound if it is gone)."""
        self._check_container()
        with self._lock:
            if resume_token is None:
                resume_token = uuid.uuid4().hex
                self._uploads[resume_token] = _Upload(key, dict(metadata or {}), datetime.now(UTC))
            elif self._uploads.get(resume_token, _Upload("", {}, datetime.now(UTC))).key != key:
                raise ObjectNotFound(
                    f"no unfinished upload of {self.url}/{key} with this resume token; "
                    "start the object again",
                    connector=self.url,
                    key=key,
                )
        return MemoryPartWriter(self, key, resume_token)

    def list_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        self._check_container()
        with self._lock:
            pending = [
                PendingUpload(u.key, token, u.initiated)
                for token, u in self._uploads.items()
                if u.key.startswith(prefix)
            ]
        return iter(sorted(pending, key=lambda p: (p.key, p.resume_token)))

    def abort_upload(self, key: str, resume_token: str) -> None:
        self._check_container()
        with self._lock:
            upload = self._uploads.get(resume_token)
            if upload is not None and upload.key == key:
                del self._uploads[resume_token]

    def _upload(self, key: str, token: str) -> _Upload:
        upload = self._uploads.get(token)
        if upload is None:
            raise ObjectNotFound(
                f"the upload of {self.url}/{key} was aborted or committed; start it again",
                connector=self.url,
                key=key,
            )
        return upload


class MemoryPartWriter:
    """Parts of one upload to a `MemoryConnector`; see `PartWriter` for the contract."""

    def __init__(self, owner: MemoryConnector, key: str, token: str) -> None:
        self._owner = owner
        self._key = key
        self._token = token

    @property
    def resume_token(self) -> str:
        return self._token

    def write_part(
        self, number: int, data: PartBytes, *, sha256: bytes | None = None
    ) -> PartReceipt:
        if number < 1:
            raise ValueError(f"part numbers start at 1, got {number}")
        kept = bytes(data)  # the caller reuses its buffer
        with self._owner._lock:
            self._owner._upload(self._key, self._token).parts[number] = kept
        return PartReceipt(number, len(kept), _etag_of(kept))

    def list_parts(self) -> builtins.list[PartReceipt]:
        with self._owner._lock:
            parts = self._owner._upload(self._key, self._token).parts
            return [PartReceipt(n, len(parts[n]), _etag_of(parts[n])) for n in sorted(parts)]

    def commit(self, parts: Sequence[PartReceipt]) -> ObjectInfo:
        """Publish the parts in the given order; ConnectorError if one is missing or differs."""
        with self._owner._lock:
            upload = self._owner._upload(self._key, self._token)
            chunks = []
            for receipt in parts:
                data = upload.parts.get(receipt.number)
                if data is None or (receipt.etag and receipt.etag != _etag_of(data)):
                    raise ConnectorError(
                        f"part {receipt.number} of {self._owner.url}/{self._key} is missing "
                        "or differs on the target; write it again before committing",
                        connector=self._owner.url,
                        key=self._key,
                    )
                chunks.append(data)
            del self._owner._uploads[self._token]
        return self._owner._store(self._key, b"".join(chunks), upload.metadata)

    def abort(self) -> None:
        self._owner.abort_upload(self._key, self._token)


if TYPE_CHECKING:
    from bascule.connectors.base import Connector, PartWriter, PartWriterOpener

    def _typecheck(connector: MemoryConnector, writer: MemoryPartWriter) -> None:
        _c: Connector = connector
        _o: PartWriterOpener = connector
        _w: PartWriter = writer

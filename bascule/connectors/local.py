"""A connector on a local directory (a mounted volume, a staging disk, the tests).

Layout under `root` (the "container"):

- objects are plain files at ``root/<key>`` ("/" in keys makes sub-directories);
- user metadata and the MD5 of what we wrote live in a sidecar,
  ``root/.bascule-meta/<key>.json``, valid only while the file's etag is unchanged;
- unfinished part uploads live in ``root/.bascule-uploads/<token>/`` (one file per part);
  commit concatenates them and renames the result into place atomically.

Both hidden folders are never listed, and keys inside them are refused. The etag is derived
from the file's inode, size and modification time: an atomic replace always changes it.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bascule.connectors.base import (
    ByteRange,
    Capabilities,
    ObjectInfo,
    PartReceipt,
    PendingUpload,
)
from bascule.errors import (
    AccessDenied,
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
    TransientStorageError,
    UnsupportedOperation,
)

META_DIR = ".bascule-meta"
UPLOADS_DIR = ".bascule-uploads"
RESERVED = (META_DIR, UPLOADS_DIR)
COPY_BUFFER_BYTES = 1024 * 1024
# Errors a second attempt may cure (a busy or interrupted filesystem); the rest are permanent.
TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT})


def _map_error(exc: OSError, url: str, key: str = "") -> ConnectorError:
    """The single place where filesystem errors become bascule errors."""
    where = f"{url}/{key}" if key else url
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return ObjectNotFound(f"{where} does not exist", connector=url, key=key)
    if isinstance(exc, PermissionError):
        return AccessDenied(
            f"permission denied on {where}; check the directory's owner and mode",
            connector=url,
            key=key,
        )
    if exc.errno in TRANSIENT_ERRNOS:
        return TransientStorageError(f"{where}: {exc.strerror}; retrying", connector=url, key=key)
    return ConnectorError(f"{where}: {exc.strerror or exc}", connector=url, key=key)


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


class LocalConnector:
    """Objects as files under `root`, which must exist (else ContainerNotFound)."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._url = self._root.resolve().as_uri()

    @property
    def url(self) -> str:
        return self._url

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(resumable_parts=True, if_match_read=True, sorted_listing=True)

    def _check_root(self) -> None:
        if not self._root.is_dir():
            raise ContainerNotFound(
                f"directory {self._root} does not exist; create it or fix the path",
                connector=self.url,
            )

    def _path(self, key: str) -> Path:
        """The file for `key`; UnsupportedOperation for keys a filesystem cannot hold."""
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or parts[0] in RESERVED:
            raise UnsupportedOperation(
                f"key {key!r} cannot be stored as a file under {self.url} (empty, '.', '..' "
                f"or reserved segment); rename it",
                connector=self.url,
                key=key,
            )
        self._check_root()
        return self._root.joinpath(*parts)

    def _meta_path(self, key: str) -> Path:
        return self._root / META_DIR / (key + ".json")

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        etag = _etag(st)
        sidecar: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            sidecar = json.loads(self._meta_path(key).read_text("utf-8"))
        if sidecar.get("etag") != etag:  # the file changed behind our back: ignore it
            sidecar = {}
        md5 = sidecar.get("content-md5")
        meta = sidecar.get("metadata")
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=etag,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            checksums={"content-md5": md5} if isinstance(md5, str) else {},
            metadata=dict(meta) if isinstance(meta, dict) else {},
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._check_root()
        return self._walk(prefix)

    def _walk(self, prefix: str) -> Iterator[ObjectInfo]:
        # Start at the deepest directory the prefix names, then filter by string prefix.
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        yield from self._walk_dir(self._root / base if base else self._root, base, prefix)

    def _walk_dir(self, directory: Path, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(directory) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False), e) for e in it]
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _map_error(exc, self.url, rel) from exc
        # Key order: a directory "a" sorts as "a/", so "a-b" comes before "a/b".
        entries.sort(key=lambda t: t[0] + "/" if t[1] else t[0])
        for name, is_dir, entry in entries:
            key = rel + name
            if not rel and name in RESERVED:
                continue
            if is_dir:
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk_dir(Path(entry.path), key + "/", prefix)
            elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
                yield self._info(key, entry.stat(follow_symlinks=False))

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc
        if not path.is_file():
            raise ObjectNotFound(f"{self.url}/{key} is a directory", connector=self.url, key=key)
        return self._info(key, st)

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        """Race-free If-Match: the etag is taken from the opened file descriptor."""
        path = self._path(key)
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc
        try:
            etag = _etag(os.fstat(handle.fileno()))
            if if_match is not None and if_match != etag:
                raise PreconditionFailed(
                    f"{self.url}/{key} changed: etag {etag}, expected {if_match}; "
                    "re-plan the object",
                    connector=self.url,
                    key=key,
                )
            if byte_range is None:
                return handle
            handle.seek(byte_range.start)
            return io.BytesIO(handle.read(byte_range.length))
        except OSError as exc:
            handle.close()
            raise _map_error(exc, self.url, key) from exc
        except BaseException:
            handle.close()
            raise
        finally:
            if byte_range is not None:
                handle.close()

    def put(
        self, key: str, data: BinaryIO, size: int, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Write `size` bytes from `data` to a temporary file, then rename it into place."""
        path = self._path(key)
        try:
            staging = self._root / UPLOADS_DIR
            staging.mkdir(exist_ok=True)
            tmp = staging / f"put-{uuid.uuid4().hex}"
            md5 = _copy_into(tmp, [data], limit=size)
            return self._publish(key, path, tmp, md5, metadata or {})
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc

    def _publish(
        self, key: str, path: Path, tmp: Path, md5: bytes, metadata: Mapping[str, str]
    ) -> ObjectInfo:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
        st = path.stat()
        meta_path = self._meta_path(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        sidecar = {
            "etag": _etag(st),
            "content-md5": base64.b64encode(md5).decode(),
            "metadata": {k.lower(): v for k, v in metadata.items()},
        }
        meta_path.write_text(json.dumps(sidecar), "utf-8")
        return self._info(key, st)

    def delete(self, key: str) -> None:
        path = self._path(key)
        for target in (path, self._meta_path(key)):
            try:
                target.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _map_error(exc, self.url, key) from exc
        self._prune(path.parent, self._root)
        self._prune(self._meta_path(key).parent, self._root / META_DIR)

    @staticmethod
    def _prune(directory: Path, stop: Path) -> None:
        # Empty folders left by a delete are not objects; remove them up to the root.
        while directory != stop and stop in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, ConnectorError):
            return exc.retryable
        return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS

    # --- PartWriterOpener ----------------------------------------------------------------

    def _upload_dir(self, token: str) -> Path:
        if not token or not all(c in "0123456789abcdef" for c in token):
            raise ObjectNotFound(f"invalid resume token for {self.url}", connector=self.url)
        return self._root / UPLOADS_DIR / token

    def open_writer(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,
        resume_token: str | None = None,
        *,
        check: bool = True,
    ) -> LocalPartWriter:
        """Start an upload (a staging folder), or reattach by token (ObjectNotFound if gone)."""
        self._path(key)
        if resume_token is not None:
            writer = LocalPartWriter(self, key, resume_token)
            if writer.manifest().get("key") != key:
                raise ObjectNotFound(
                    f"no unfinished upload of {self.url}/{key} with this resume token; "
                    "start the object again",
                    connector=self.url,
                    key=key,
                )
            return writer
        token = uuid.uuid4().hex
        manifest = {
            "key": key,
            "metadata": dict(metadata or {}),
            "initiated": datetime.now(UTC).isoformat(),
        }
        try:
            directory = self._upload_dir(token)
            directory.mkdir(parents=True)
            (directory / "upload.json").write_text(json.dumps(manifest), "utf-8")
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc
        return LocalPartWriter(self, key, token)

    def list_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        self._check_root()
        staging = self._root / UPLOADS_DIR
        tokens = sorted(p.name for p in staging.iterdir() if p.is_dir()) if staging.is_dir() else []
        for token in tokens:
            manifest = LocalPartWriter(self, "", token).manifest()
            key = manifest.get("key")
            if isinstance(key, str) and key.startswith(prefix):
                started = manifest.get("initiated")
                when = datetime.fromisoformat(started) if isinstance(started, str) else None
                yield PendingUpload(key, token, when)

    def abort_upload(self, key: str, resume_token: str) -> None:
        self._check_root()
        shutil.rmtree(self._upload_dir(resume_token), ignore_errors=True)


def _copy_into(target: Path, sources: Sequence[BinaryIO], limit: int | None = None) -> bytes:
    """Copy `sources` (at most `limit` bytes in total) into `target`, fsync it; its MD5."""
    md5 = hashlib.md5(usedforsecurity=False)
    remaining = limit
    with target.open("wb") as out:
        for source in sources:
            while remaining is None or remaining > 0:
                want = COPY_BUFFER_BYTES if remaining is None else min(remaining, COPY_BUFFER_BYTES)
                block = source.read(want)
                if not block:
                    break
                md5.update(block)
                out.write(block)
                if remaining is not None:
                    remaining -= len(block)
        out.flush()
        os.fsync(out.fileno())
    return md5.digest()


class LocalPartWriter:
    """Parts as files in a staging folder; see `PartWriter` for the contract."""

    def __init__(self, owner: LocalConnector, key: str, token: str) -> None:
        self._owner = owner
        self._key = key
        self._token = token
        self._dir = owner._upload_dir(token)

    @property
    def resume_token(self) -> str:
        return self._token

    def manifest(self) -> dict[str, object]:
        try:
            loaded = json.loads((self._dir / "upload.json").read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _gone(self) -> ObjectNotFound:
        return ObjectNotFound(
            f"the upload of {self._owner.url}/{self._key} was aborted or committed; start it again",
            connector=self._owner.url,
            key=self._key,
        )

    def write_part(self, number: int, data: bytes) -> PartReceipt:
        """Write part `number` atomically (a rewrite replaces it)."""
        if number < 1:
            raise ValueError(f"part numbers start at 1, got {number}")
        if not self._dir.is_dir():
            raise self._gone()
        tmp = self._dir / f"{number}.{uuid.uuid4().hex}.tmp"
        try:
            _copy_into(tmp, [io.BytesIO(data)])
            os.replace(tmp, self._dir / str(number))
            return PartReceipt(number, len(data), _etag(os.stat(self._dir / str(number))))
        except OSError as exc:
            raise _map_error(exc, self._owner.url, self._key) from exc

    def list_parts(self) -> builtins.list[PartReceipt]:
        if not self._dir.is_dir():
            raise self._gone()
        receipts = []
        for path in self._dir.iterdir():
            if path.name.isdigit():
                st = path.stat()
                receipts.append(PartReceipt(int(path.name), st.st_size, _etag(st)))
        return sorted(receipts, key=lambda r: r.number)

    def commit(self, parts: Sequence[PartReceipt]) -> ObjectInfo:
        """Concatenate `parts` in order and publish; ConnectorError if one is missing or was
        rewritten since its receipt."""
        held = {r.number: r for r in self.list_parts()}
        for receipt in parts:
            found = held.get(receipt.number)
            if found is None or (receipt.etag and receipt.etag != found.etag):
                raise ConnectorError(
                    f"part {receipt.number} of {self._owner.url}/{self._key} is missing or "
                    "differs on the target; write it again before committing",
                    connector=self._owner.url,
                    key=self._key,
                )
        path = self._owner._path(self._key)
        metadata = self.manifest().get("metadata")
        try:
            handles = [(self._dir / str(r.number)).open("rb") for r in parts]
            try:
                tmp = self._dir / "object.tmp"
                md5 = _copy_into(tmp, handles)
            finally:
                for handle in handles:
                    handle.close()
            info = self._owner._publish(
                self._key, path, tmp, md5, metadata if isinstance(metadata, dict) else {}
            )
        except OSError as exc:
            raise _map_error(exc, self._owner.url, self._key) from exc
        shutil.rmtree(self._dir, ignore_errors=True)
        return info

    def abort(self) -> None:
        self._owner.abort_upload(self._key, self._token)


if TYPE_CHECKING:
    from bascule.connectors.base import Connector, PartWriter, PartWriterOpener

    def _typecheck(connector: LocalConnector, writer: LocalPartWriter) -> None:
        _c: Connector = connector
        _o: PartWriterOpener = connector
        _w: PartWriter = writer

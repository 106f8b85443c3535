"""A connector on a local directory (a mounted volume, a staging disk, the tests).

Layout under `root` (the "container"):

- objects are plain files at ``root/<key>`` ("/" in keys makes sub-directories);
- user metadata and the MD5 of what we wrote live with the file, in its ``user.bascule``
  extended attribute (one file created per object, as rclone does; in a form short enough
  for an ext4 inode to hold, see `record_codec`), or, on a file system
  without extended attributes, in a sidecar ``root/.bascule-meta/<key>.json``; either is
  valid only while the file's etag is unchanged; a listing reads a file's record only when
  its checksum or metadata is asked for;
- a put writes its object without a name (O_TMPFILE) in the object's folder and links it into
  place, so a crash leaves nothing behind; where the file system or kernel cannot (NFS, FUSE,
  other platforms), it writes ``<folder>/.bascule-put-<hex>`` and renames it into place
  (such names are never listed, and refused as keys);
- unfinished part uploads live in ``root/.bascule-uploads/<token>/`` (one file per part);
  commit concatenates them and renames the result into place atomically.

Both hidden folders are never listed (`skipped` names those present, so that a plan reports
them), and keys inside them are refused. The etag is derived from the file's inode, size and
modification time: an atomic replace always changes it.

Symbolic links are never followed below the root (the root itself may be one): every folder
on the way to a key is opened from its parent's descriptor with ``O_NOFOLLOW`` (openat-style),
and files are opened with ``O_NOFOLLOW`` too. So a link is not an object: `list` neither shows
nor descends into one; `stat` and `open_read` answer ObjectNotFound for a key that is (or goes
through) a link, so a file swapped for a link after planning is never read; `put` and
multipart commits refuse a link on the way (UnsupportedOperation) and replace a link at the
key itself (never writing to what it points to); `delete` leaves links alone. The same holds
for the staging and sidecar folders.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import io
import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bascule.connectors.base import (
    NAME_MAX_BYTES,
    ByteRange,
    Capabilities,
    ObjectInfo,
    PartBytes,
    PartReceipt,
    PendingUpload,
    display_key,
    path_key_problem,
    refuse_key,
)
from bascule.connectors.file_records import (
    STAGING_PREFIX,
    LazyRecord,
    LinkRefused,
    StagedFile,
    copy_fd,
    file_etag,
    link_into,
    open_anonymous,
    stage_file,
    staging_name,
    write_staged,
    xattr_at,
    xattr_record,
)
from bascule.connectors.fileio import (
    CREATE_FLAGS,
    Closing,
    create_file,
    is_link,
    on_network_fs,
    open_beneath,
    open_file,
    pread_all,
    syncfs,
    unlink_quietly,
    write_file,
)
from bascule.connectors.held_folders import HeldFolders
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
META_SUFFIX = ".json"
MANIFEST = "upload.json"
# Every folder below the root is opened with these: a link is never followed.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
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


class LocalConnector:
    """Objects as files under `root`, which must exist (else ContainerNotFound)."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._url = self._root.resolve().as_uri()
        self._held = HeldFolders()
        self._anonymous = True  # puts stage without a name until one answers that it cannot

    @property
    def url(self) -> str:
        return self._url

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            resumable_parts=True,
            if_match_read=True,
            part_rewrite=True,
            sorted_listing=True,
            latency_free=self._latency_free,
        )

    @functools.cached_property
    def _latency_free(self) -> bool:
        """On a local disk, not a network mount (where it cannot be told: not)."""
        return on_network_fs(str(self._root)) is False

    def key_problem(self, key: str) -> str | None:
        """Path rules (see `path_key_problem`); a segment leaves room for the sidecar's
        ".json" suffix, and the first may not be one of the reserved folders."""
        problem = path_key_problem(
            key, reserved=RESERVED, max_segment_bytes=NAME_MAX_BYTES - len(META_SUFFIX)
        )
        if problem is None and key.rsplit("/", 1)[-1].startswith(STAGING_PREFIX):
            return f"names starting {STAGING_PREFIX!r} are bascule's staging files here; rename it"
        return problem

    def skipped(self, prefix: str = "") -> builtins.list[str]:
        """The reserved folders present at the root that `prefix` covers (never listed)."""
        self._check_root()
        found = []
        for name in sorted(RESERVED):
            covered = (name + "/").startswith(prefix) or prefix.startswith(name + "/")
            if covered and os.path.lexists(self._root / name):
                found.append(name + "/")
        return found

    def _check_root(self) -> None:
        if not self._root.is_dir():
            raise ContainerNotFound(
                f"directory {self._root} does not exist; create it or fix the path",
                connector=self.url,
            )

    def _parts(self, key: str) -> builtins.list[str]:
        """The path segments of `key`; UnsupportedOperation for keys a folder cannot hold."""
        problem = self.key_problem(key)
        if problem is not None:
            raise refuse_key(self.url, key, problem)
        return key.split("/")

    def _link_error(self, key: str, name: str, *, reading: bool) -> ConnectorError:
        where = f"{self.url}/{display_key(key)}"
        if reading:  # a link is not an object: what was planned is gone
            return ObjectNotFound(
                f"{where}: '{name}' is a symbolic link, which bascule never follows; "
                "replace it with the file itself",
                connector=self.url,
                key=key,
            )
        return UnsupportedOperation(
            f"{where}: '{name}' is a symbolic link, which bascule never writes through; "
            "replace it with a real folder",
            connector=self.url,
            key=key,
        )

    def _dir(
        self, parts: Sequence[str], key: str, *, create: bool = False, reading: bool = False
    ) -> contextlib.AbstractContextManager[int]:
        """A descriptor on root/parts, each folder opened from its parent without following a
        link (a link anywhere on the way is refused); `create` makes missing folders.
        OSError (FileNotFoundError when a folder is missing) is the caller's to map; a
        missing root is ContainerNotFound."""
        if self._held.active:  # kept open for the batch, closed at its end
            return contextlib.nullcontext(
                self._held.get(
                    tuple(parts),
                    lambda: self._open_dir(parts, key, create=create, reading=reading),
                )
            )
        return Closing(self._open_dir(parts, key, create=create, reading=reading))

    def _open_dir(self, parts: Sequence[str], key: str, *, create: bool, reading: bool) -> int:
        """The descriptor `_dir` yields, for the caller to close."""
        try:
            fd = os.open(self._root, DIR_FLAGS & ~os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root()
            raise
        try:
            for name in parts:
                fd = self._step(fd, name, key, create=create, reading=reading)
        except BaseException:
            os.close(fd)  # the last folder opened: `_step` keeps it open when it fails
            raise
        return fd

    def holding_folders(self) -> contextlib.AbstractContextManager[None]:
        """Until exit, this thread keeps the folders it opens (see `held_folders`)."""
        return self._held.holding()

    def _step(self, fd: int, name: str, key: str, *, create: bool, reading: bool) -> int:
        """Open folder `name` under `fd` and close `fd` (it stays open on failure)."""
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and is_link(fd, name):
                raise self._link_error(key, name, reading=reading) from None
            raise
        os.close(fd)
        return child

    def _lstat(self, dir_fd: int, name: str, key: str) -> os.stat_result:
        """The file `name` itself; ObjectNotFound for a link or a folder."""
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise self._link_error(key, name, reading=True)
        if not stat.S_ISREG(st.st_mode):
            where = f"{self.url}/{display_key(key)}"
            raise ObjectNotFound(f"{where} is not a file", connector=self.url, key=key)
        return st

    def _sidecar(self, key: str) -> dict[str, object]:
        parts = key.split("/")
        try:
            with (
                self._dir([META_DIR, *parts[:-1]], key, reading=True) as fd,
                open_file(fd, parts[-1] + META_SUFFIX) as fh,
            ):
                loaded = json.loads(fh.read().decode("utf-8"))
        except (OSError, ValueError, ConnectorError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _info(self, key: str, st: os.stat_result, dir_fd: int) -> ObjectInfo:
        """What `st` says of `key` (a file of the folder `dir_fd`), with the checksum and
        metadata bascule recorded when it wrote it (see `_read_record`)."""
        etag = file_etag(st)
        record = self._read_record(key, etag, dir_fd)
        md5, meta = record.get("content-md5"), record.get("metadata")
        checksums = {"content-md5": md5} if isinstance(md5, str) else {}
        return self._object_info(
            key, st, etag, checksums, dict(meta) if isinstance(meta, dict) else {}
        )

    def _listed_info(self, key: str, st: os.stat_result, sidecars: bool) -> ObjectInfo:
        """`_info` for a listing: the record is read when its checksum or metadata is first
        asked for (reading the extended attributes of a million files costs a disk read
        each; a plan or `verify --level quick` of encrypted copies never asks). By path:
        a folder swapped for a link since cannot pass another file's record off as this
        one's, since a record names the inode, size and time of the file it describes.
        `sidecars`: the root has a sidecar folder (else none is looked for)."""
        etag = file_etag(st)
        path = os.path.join(self._root, key)

        def load() -> dict[str, object]:
            record = xattr_at(path)
            if record.get("etag") != etag and sidecars:
                record = self._sidecar(key)
            return record if record.get("etag") == etag else {}

        record = LazyRecord(load)
        return self._object_info(key, st, etag, record.checksums, record.metadata)

    @staticmethod
    def _object_info(
        key: str,
        st: os.stat_result,
        etag: str,
        checksums: Mapping[str, str],
        meta: Mapping[str, str],
    ) -> ObjectInfo:
        when = datetime.fromtimestamp(st.st_mtime, UTC)
        return ObjectInfo(key, st.st_size, etag, when, checksums=checksums, metadata=meta)

    def _read_record(self, key: str, etag: str, dir_fd: int) -> dict[str, object]:
        """The record of `key` (a file of `dir_fd`): its extended attribute, else its
        sidecar; {} when neither holds one for this very file (a record whose etag is not
        the file's: the file changed behind our back)."""
        record = xattr_record(dir_fd, key.rsplit("/", 1)[-1])
        if record.get("etag") != etag:
            record = self._sidecar(key)
        return record if record.get("etag") == etag else {}

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Regular files only: links (to files or folders) are neither listed nor followed,
        and the reserved folders at the root are left out (see `skipped`)."""
        self._check_root()
        return self._walk(prefix)

    def _walk(self, prefix: str) -> Iterator[ObjectInfo]:
        # Start at the deepest directory the prefix names, then filter by string prefix.
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        parts = base.split("/")[:-1]
        if any(p in ("", ".", "..") for p in parts):
            return  # no storable key lies under such a prefix
        try:
            with self._dir(parts, prefix, reading=True) as fd:
                sidecars = os.path.lexists(self._root / META_DIR)
                yield from self._walk_dir(fd, base, prefix, sidecars)
        except (FileNotFoundError, NotADirectoryError, ObjectNotFound):
            return
        except OSError as exc:
            raise _map_error(exc, self.url, base) from exc

    def _walk_dir(self, fd: int, rel: str, prefix: str, sidecars: bool) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False), e) for e in it]
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
                    yield from self._walk_child(fd, name, key + "/", prefix, sidecars)
            elif name.startswith(STAGING_PREFIX):
                continue  # a put under way (or one a crash left behind): not an object
            elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
                yield self._listed_info(key, entry.stat(follow_symlinks=False), sidecars)

    def _walk_child(
        self, fd: int, name: str, rel: str, prefix: str, sidecars: bool
    ) -> Iterator[ObjectInfo]:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            return  # removed since the folder was read
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return  # swapped for a link or a file since the folder was read
            raise _map_error(exc, self.url, rel) from exc
        try:
            yield from self._walk_dir(child, rel, prefix, sidecars)
        finally:
            os.close(child)

    def stat(self, key: str) -> ObjectInfo:
        parts = self._parts(key)
        try:
            with self._dir(parts[:-1], key, reading=True) as fd:
                return self._info(key, self._lstat(fd, parts[-1], key), fd)
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        """Race-free If-Match: the etag is taken from the opened file descriptor, and the
        file is opened without following a link (a file swapped for one is not read)."""
        parts = self._parts(key)
        fd = self._open_fast(key)
        try:
            if fd is None:
                with self._dir(parts[:-1], key, reading=True) as dir_fd:
                    fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._link_error(key, parts[-1], reading=True) from None
            raise _map_error(exc, self.url, key) from exc
        try:
            self._check_opened(key, os.fstat(fd), if_match)
            if byte_range is None:
                handed_over, fd = fd, -1
                return os.fdopen(handed_over, "rb")
            return io.BytesIO(pread_all(fd, byte_range))
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc
        finally:
            if fd >= 0:
                os.close(fd)

    def _open_fast(self, key: str) -> int | None:
        """The file at `key` opened in one call where the kernel can refuse every link on the
        way (openat2), else None: then a folder at a time (a 3-folder key: 8 calls fewer)."""
        if self._held.active:
            root_fd = functools.partial(self._open_dir, [], key, create=False, reading=True)
            try:
                held = self._held.get((), root_fd)
            except (OSError, ConnectorError):
                return None
            return open_beneath(held, key, _READ_FLAGS)
        try:
            root = os.open(self._root, DIR_FLAGS & ~os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            return open_beneath(root, key, _READ_FLAGS)
        finally:
            os.close(root)

    def _check_opened(self, key: str, st: os.stat_result, if_match: str | None) -> None:
        if not stat.S_ISREG(st.st_mode):
            where = f"{self.url}/{display_key(key)}"
            raise ObjectNotFound(f"{where} is not a file", connector=self.url, key=key)
        etag = file_etag(st)
        if if_match is not None and if_match != etag:
            raise PreconditionFailed(
                f"{self.url}/{key} changed: etag {etag}, expected {if_match}; re-plan the object",
                connector=self.url,
                key=key,
            )

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        """Write `size` bytes from `data` to a staging file, fsync it, then rename it into
        place. The staging file is removed whatever fails."""
        return self._put(key, data, size, metadata, sync=True)

    def put_unsynced(
        self, key: str, data: BinaryIO, size: int, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """`put` without the fsync: the object is in place, and durable after `sync`."""
        return self._put(key, data, size, metadata, sync=False)

    def sync(self) -> None:
        """Make every write to the file system holding the root durable (syncfs(2); where
        the platform has none, sync(2))."""
        try:
            fd = os.open(self._root, DIR_FLAGS & ~os.O_NOFOLLOW)
            try:
                syncfs(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _map_error(exc, self.url) from exc

    def _put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None,
        *,
        sync: bool,
    ) -> ObjectInfo:
        # The file is written in the object's own folder, without a name where it can be
        # (nothing to clean after a crash), else under one `list` never shows; its record is
        # set on it before it takes its name, so an object never shows without its record.
        parts = self._parts(key)
        try:
            with self._dir(parts[:-1], key, create=True) as fd:
                anonymous = open_anonymous(fd) if self._anonymous else None
                if anonymous is None:
                    self._anonymous = False  # one file system under one root: asked once
                    tmp = staging_name()  # O_EXCL refuses a name in use
                    staged = stage_file(fd, tmp, [data], metadata or {}, limit=size, sync=sync)
                    return self._publish(key, parts, fd, tmp, staged, dst_fd=fd)
                try:
                    staged = write_staged(anonymous, [data], metadata or {}, size, sync=sync)
                    link_into(anonymous, fd, parts[-1])
                finally:
                    os.close(anonymous)
                return self._published(key, parts, staged)
        except LinkRefused as exc:
            self._anonymous = False  # the retry, and every later put, stage under a name
            raise TransientStorageError(
                f"{self.url}/{display_key(key)}: the kernel refused to name an anonymous file "
                f"({exc}); writing it again under a staging name",
                connector=self.url,
                key=key,
            ) from exc
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc

    def _publish(
        self,
        key: str,
        parts: Sequence[str],
        src_fd: int,
        src: str,
        staged: StagedFile,
        *,
        dst_fd: int | None = None,
    ) -> ObjectInfo:
        """Rename staged file `src` (in `src_fd`) into place (the folder `dst_fd`, or opened
        here; `src` is removed if that fails), then as `_published`. Every folder on the way
        is opened without following links (a link there is refused)."""
        try:
            if dst_fd is not None:
                os.replace(src, parts[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            else:
                with self._dir(parts[:-1], key, create=True) as fd:
                    os.replace(src, parts[-1], src_dir_fd=src_fd, dst_dir_fd=fd)
        except BaseException:
            unlink_quietly(src_fd, src)
            raise
        return self._published(key, parts, staged)

    def _published(self, key: str, parts: Sequence[str], staged: StagedFile) -> ObjectInfo:
        """The object `staged` now is: its sidecar written first where its record could not
        go into an extended attribute."""
        if not staged.in_xattr:
            with self._dir([META_DIR, *parts[:-1]], key, create=True) as meta_fd:
                write_file(meta_fd, parts[-1] + META_SUFFIX, staged.sidecar)
        st = staged.st
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=staged.etag,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            checksums={"content-md5": staged.md5_b64},
            metadata=staged.metadata,
        )

    def delete(self, key: str) -> None:
        """Remove the file `key` and its sidecar. A link, at the key or on the way to it, is
        not an object: it is left as it is, and nothing it points to is touched."""
        parts = self._parts(key)
        for base in ([], [META_DIR]):
            name = parts[-1] + (META_SUFFIX if base else "")
            try:
                with self._dir([*base, *parts[:-1]], key, reading=True) as fd:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        os.unlink(name, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError, ObjectNotFound):
                continue
            except OSError as exc:
                raise _map_error(exc, self.url, key) from exc
            self._prune(base, parts[:-1], key)

    def _prune(self, base: Sequence[str], folders: Sequence[str], key: str) -> None:
        # Empty folders left by a delete are not objects; remove them up to `base`.
        for depth in range(len(folders), 0, -1):
            try:
                with self._dir([*base, *folders[: depth - 1]], key, reading=True) as fd:
                    os.rmdir(folders[depth - 1], dir_fd=fd)  # never follows a link
            except (OSError, ConnectorError):
                return

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, ConnectorError):
            return exc.retryable
        return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS

    # --- PartWriterOpener ----------------------------------------------------------------

    def _check_token(self, token: str) -> str:
        if not token or not all(c in "0123456789abcdef" for c in token):
            raise ObjectNotFound(f"invalid resume token for {self.url}", connector=self.url)
        return token

    def _upload_dir(self, token: str, key: str) -> contextlib.AbstractContextManager[int]:
        """The staging folder of upload `token` (FileNotFoundError when it is gone)."""
        return self._dir([UPLOADS_DIR, self._check_token(token)], key)

    def open_writer(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,
        resume_token: str | None = None,
        *,
        check: bool = True,
    ) -> LocalPartWriter:
        """Start an upload (a staging folder), or reattach by token (ObjectNotFound if gone)."""
        self._parts(key)
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
            with self._dir([UPLOADS_DIR], key, create=True) as staging:
                os.mkdir(token, dir_fd=staging)
            with self._upload_dir(token, key) as fd, create_file(fd, MANIFEST) as fh:
                fh.write(json.dumps(manifest).encode("utf-8"))
        except OSError as exc:
            raise _map_error(exc, self.url, key) from exc
        return LocalPartWriter(self, key, token)

    def list_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        self._check_root()
        try:
            with self._dir([UPLOADS_DIR], prefix, reading=True) as staging:
                tokens = sorted(
                    name
                    for name in os.listdir(staging)
                    if stat.S_ISDIR(os.stat(name, dir_fd=staging, follow_symlinks=False).st_mode)
                )
        except (FileNotFoundError, NotADirectoryError, ObjectNotFound):
            tokens = []
        for token in tokens:
            manifest = LocalPartWriter(self, "", token).manifest()
            key = manifest.get("key")
            if isinstance(key, str) and key.startswith(prefix):
                started = manifest.get("initiated")
                when = datetime.fromisoformat(started) if isinstance(started, str) else None
                yield PendingUpload(key, token, when)

    def abort_upload(self, key: str, resume_token: str) -> None:
        self._check_root()
        token = self._check_token(resume_token)
        with (
            contextlib.suppress(OSError, ObjectNotFound),
            self._dir([UPLOADS_DIR], key, reading=True) as staging,
        ):
            # rmtree with dir_fd never follows a link (and refuses one at `token`).
            shutil.rmtree(token, dir_fd=staging)


def _copy_into(dir_fd: int, name: str, sources: Sequence[BinaryIO]) -> None:
    """Copy `sources` into the new file `name` of `dir_fd`, fsync'ed (a part: no record)."""
    fd = os.open(name, CREATE_FLAGS | os.O_EXCL, 0o666, dir_fd=dir_fd)
    try:
        copy_fd(fd, sources, None)
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalPartWriter:
    """Parts as files in a staging folder; see `PartWriter` for the contract."""

    def __init__(self, owner: LocalConnector, key: str, token: str) -> None:
        self._owner = owner
        self._key = key
        self._token = owner._check_token(token)

    @property
    def resume_token(self) -> str:
        return self._token

    def _folder(self) -> contextlib.AbstractContextManager[int]:
        return self._owner._upload_dir(self._token, self._key)

    def manifest(self) -> dict[str, object]:
        try:
            with self._folder() as fd, open_file(fd, MANIFEST) as fh:
                loaded = json.loads(fh.read().decode("utf-8"))
        except (OSError, ValueError, ConnectorError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _gone(self) -> ObjectNotFound:
        return ObjectNotFound(
            f"the upload of {self._owner.url}/{self._key} was aborted or committed; start it again",
            connector=self._owner.url,
            key=self._key,
        )

    def write_part(
        self, number: int, data: PartBytes, *, sha256: bytes | None = None
    ) -> PartReceipt:
        """Write part `number` atomically (a rewrite replaces it)."""
        if number < 1:
            raise ValueError(f"part numbers start at 1, got {number}")
        tmp = f"{number}.{uuid.uuid4().hex}.tmp"
        try:
            with self._folder() as fd:
                try:
                    _copy_into(fd, tmp, [io.BytesIO(data)])
                    os.replace(tmp, str(number), src_dir_fd=fd, dst_dir_fd=fd)
                finally:
                    unlink_quietly(fd, tmp)
                st = os.stat(str(number), dir_fd=fd, follow_symlinks=False)
                return PartReceipt(number, len(data), file_etag(st))
        except (FileNotFoundError, NotADirectoryError):
            raise self._gone() from None
        except OSError as exc:
            raise _map_error(exc, self._owner.url, self._key) from exc

    def list_parts(self) -> builtins.list[PartReceipt]:
        receipts = []
        try:
            with self._folder() as fd:
                for name in os.listdir(fd):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if name.isdigit() and stat.S_ISREG(st.st_mode):
                        receipts.append(PartReceipt(int(name), st.st_size, file_etag(st)))
        except (FileNotFoundError, NotADirectoryError):
            raise self._gone() from None
        except OSError as exc:
            raise _map_error(exc, self._owner.url, self._key) from exc
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
        key_parts = self._owner._parts(self._key)
        metadata = self.manifest().get("metadata")
        try:
            with self._folder() as fd:
                info = self._assemble(fd, key_parts, parts, metadata)
        except OSError as exc:
            raise _map_error(exc, self._owner.url, self._key) from exc
        self.abort()
        return info

    def _assemble(
        self, fd: int, key_parts: Sequence[str], parts: Sequence[PartReceipt], metadata: object
    ) -> ObjectInfo:
        tmp = f"object.{uuid.uuid4().hex}.tmp"
        handles = []
        try:
            for receipt in parts:
                handles.append(open_file(fd, str(receipt.number)))
            meta = metadata if isinstance(metadata, dict) else {}
            staged = stage_file(fd, tmp, handles, meta)
        finally:
            for handle in handles:
                handle.close()
        return self._owner._publish(self._key, key_parts, fd, tmp, staged)

    def abort(self) -> None:
        self._owner.abort_upload(self._key, self._token)


if TYPE_CHECKING:
    from bascule.connectors.base import Connector, DeferredSync, PartWriter, PartWriterOpener

    def _typecheck(connector: LocalConnector, writer: LocalPartWriter) -> None:
        _c: Connector = connector
        _o: PartWriterOpener = connector
        _d: DeferredSync = connector
        _w: PartWriter = writer

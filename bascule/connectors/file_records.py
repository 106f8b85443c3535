"""What the local connector records of each file it writes (its MD5 and metadata, with the
etag they describe), as extended attributes: reading them for a whole listing would cost a
disk read per file, so a listing's records are read when first asked for.

`XATTR` names the attribute; its value is the record in the compact form of `record_codec`
(small enough for an ext4 inode), where a sidecar holds it as JSON. A file is
written with its record on one descriptor (`write_staged`) before it takes its name: where
the kernel and file system allow, it is written without a name (`open_anonymous`, O_TMPFILE)
and linked into place (`link_into`), so that a crash leaves nothing behind; elsewhere it is
written under a staging name (`stage_file`) and renamed into place.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from bascule.connectors import record_codec
from bascule.connectors.fileio import CREATE_FLAGS, unlink_quietly, write_all

_json_str = json.encoder.encode_basestring_ascii  # the C function json.dumps uses

XATTR = "user.bascule"
# setxattr's answers meaning "not here" (no xattrs, too big): the sidecar is used instead
NO_XATTR_ERRNOS = frozenset(
    {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOENT, errno.E2BIG, errno.ENOSPC}
)
COPY_BUFFER_BYTES = 1024 * 1024
# A file staged under a name (where no anonymous file can be made): this prefix and hex. Such
# names are never listed, and refused as keys.
STAGING_PREFIX = ".bascule-put-"
# O_TMPFILE (Linux 3.11 on; ext4, xfs, btrfs, tmpfs...): a file with no name until it is linked.
_TMPFILE_FLAGS = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC if hasattr(os, "O_TMPFILE") else None
# open(2)'s answers meaning "no O_TMPFILE here" (an older kernel opens the folder: EISDIR).
NO_TMPFILE_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL})
_PROC_FD = "/proc/self/fd"
# linkat(2)'s answers meaning "no anonymous file is named through /proc here".
NO_PROC_LINK_ERRNOS = frozenset(
    {errno.EPERM, errno.EACCES, errno.ENOENT, errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL}
)


def file_etag(st: os.stat_result) -> str:
    """A file's etag: its inode, size and modification time (an atomic replace changes it)."""
    return f"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"


class LazyRecord:
    """A file's record, read on first use; `checksums` and `metadata` are its two views."""

    def __init__(self, load: Callable[[], dict[str, object]]) -> None:
        self._load: Callable[[], dict[str, object]] | None = load
        self._record: dict[str, object] = {}
        self.checksums = _LazyView(self, "checksums")
        self.metadata = _LazyView(self, "metadata")

    def view(self, which: str) -> dict[str, str]:
        if self._load is not None:
            self._record, self._load = self._load(), None
        if which == "checksums":
            md5 = self._record.get("content-md5")
            return {"content-md5": md5} if isinstance(md5, str) else {}
        meta = self._record.get("metadata")
        return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


class _LazyView(Mapping[str, str]):
    """A read-only mapping whose contents are read when first looked at; pickles (and
    compares) as the plain dict it holds."""

    def __init__(self, owner: LazyRecord, which: str) -> None:
        self._owner = owner
        self._which = which

    def _data(self) -> dict[str, str]:
        return self._owner.view(self._which)

    def __getitem__(self, key: str) -> str:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __eq__(self, other: object) -> bool:
        return self._data() == (dict(other) if isinstance(other, Mapping) else other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data().items())))

    def __repr__(self) -> str:
        return repr(self._data())

    def __reduce__(self) -> tuple[type[dict[str, str]], tuple[dict[str, str]]]:
        return dict, (self._data(),)


def xattr_record(dir_fd: int, name: str) -> dict[str, object]:
    """The record in the extended attribute of file `name` of `dir_fd` (never through a
    link: opened with O_NOFOLLOW), {} when there is none."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            raw = os.getxattr(fd, XATTR)
        finally:
            os.close(fd)
    except OSError:
        return {}
    return record_codec.decode(raw)


def xattr_at(path: str) -> dict[str, object]:
    """The record in the extended attribute of the file at `path` (a link at the end of the
    path is not followed), {} when there is none."""
    try:
        raw = os.getxattr(path, XATTR, follow_symlinks=False)
    except OSError:
        return {}
    return record_codec.decode(raw)


@dataclass(frozen=True)
class StagedFile:
    """A staged file, written: what its stat said, its record (etag, MD5 and metadata),
    whether that record is in its extended attribute (compact, see `record_codec`) and, where
    it is not, the JSON the caller writes to its sidecar."""

    st: os.stat_result
    etag: str
    md5_b64: str
    metadata: dict[str, str]
    sidecar: bytes
    in_xattr: bool


def stage_file(
    dir_fd: int,
    name: str,
    sources: Sequence[BinaryIO],
    metadata: Mapping[str, str],
    limit: int | None = None,
    *,
    sync: bool = True,
) -> StagedFile:
    """Copy `sources` (at most `limit` bytes in all) into the new file `name` of `dir_fd`
    (see `write_staged`). The file is removed if any of it fails. The record's etag holds
    after the rename: a rename keeps the inode, size and mtime."""
    fd = os.open(name, CREATE_FLAGS | os.O_EXCL, 0o666, dir_fd=dir_fd)
    try:
        staged = write_staged(fd, sources, metadata, limit, sync=sync)
    except BaseException:
        os.close(fd)
        unlink_quietly(dir_fd, name)
        raise
    os.close(fd)
    return staged


def write_staged(
    fd: int,
    sources: Sequence[BinaryIO],
    metadata: Mapping[str, str],
    limit: int | None,
    *,
    sync: bool,
) -> StagedFile:
    """Copy `sources` (at most `limit` bytes in all) into the new file open on `fd`, set its
    record in its extended attribute where the file system has them, and fsync it when
    `sync`: all on the one descriptor, which the caller closes."""
    md5 = copy_fd(fd, sources, limit)
    st = os.fstat(fd)
    md5_b64 = base64.b64encode(md5).decode()
    meta = {k.lower(): v for k, v in metadata.items()}
    etag = file_etag(st)
    record = record_codec.encode_file(st, md5, meta) or record_json(etag, md5_b64, meta)
    in_xattr = _set_record(fd, record)
    sidecar = b"" if in_xattr else record_json(etag, md5_b64, meta)
    if sync:
        os.fsync(fd)
    return StagedFile(st, etag, md5_b64, meta, sidecar, in_xattr)


def record_json(etag: str, md5_b64: str, metadata: Mapping[str, str]) -> bytes:
    """A file's record, exactly as `json.dumps` writes it (ASCII, ", " and ": "), put
    together from its strings: 1.3 us a file instead of 2.7, the encoder's set-up being most
    of its cost for so small an object."""
    try:
        pairs = ", ".join(f"{_json_str(k)}: {_json_str(v)}" for k, v in metadata.items())
        head = f'{{"etag": {_json_str(etag)}, "content-md5": {_json_str(md5_b64)}'
    except TypeError:  # a value that is not a string: the encoder says what it is
        record = {"etag": etag, "content-md5": md5_b64, "metadata": dict(metadata)}
        return json.dumps(record).encode("utf-8")
    return f'{head}, "metadata": {{{pairs}}}}}'.encode("ascii")


def staging_name() -> str:
    """A fresh staging name (unique in practice: the call that creates it refuses one in
    use)."""
    return STAGING_PREFIX + os.urandom(16).hex()


@functools.cache
def _links_from_proc() -> bool:
    """Whether this process can name an anonymous file by linking /proc/self/fd/N (open(2)'s
    way for O_TMPFILE without CAP_DAC_READ_SEARCH): /proc must be mounted."""
    return os.path.isdir(_PROC_FD)


def open_anonymous(dir_fd: int) -> int | None:
    """A new file without a name, on the file system of the folder `dir_fd`, open for
    writing (O_TMPFILE); None where there is none (another platform, a kernel or file
    system without it, such as NFS or FUSE, or no /proc): the caller stages under a name.

    Until `link_into` names it, nothing shows in the folder, and a crash (SIGKILL
    included) leaves nothing behind: the kernel frees the file with its last descriptor."""
    if _TMPFILE_FLAGS is None or not _links_from_proc():
        return None
    try:
        return os.open(".", _TMPFILE_FLAGS, 0o666, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in NO_TMPFILE_ERRNOS:
            return None
        raise


class LinkRefused(Exception):
    """The kernel would not name an anonymous file through /proc (a sandbox, a restricted
    /proc): the file is gone with its descriptor; stage the next ones under a name."""


def link_into(fd: int, dir_fd: int, name: str) -> None:
    """Give the anonymous file open on `fd` the name `name` in the folder `dir_fd` (where it
    was opened), replacing what is there: a free name is linked at once (one call, no
    rename); a name in use is replaced by linking a staging name and renaming it over it
    (atomic; a link at `name` is itself replaced, never written through). LinkRefused when
    the kernel refuses the link itself."""
    source = f"{_PROC_FD}/{fd}"
    try:
        os.link(source, name, dst_dir_fd=dir_fd, follow_symlinks=True)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno in NO_PROC_LINK_ERRNOS:
            raise LinkRefused(exc.strerror or str(exc)) from exc
        raise
    staging = staging_name()  # linkat refuses a name in use
    os.link(source, staging, dst_dir_fd=dir_fd, follow_symlinks=True)
    try:
        os.replace(staging, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        unlink_quietly(dir_fd, staging)
        raise


def _set_record(fd: int, record: bytes) -> bool:
    """Put `record` in the file's extended attribute; False where the file system has none
    (or none that large): the caller writes a sidecar instead."""
    try:
        os.setxattr(fd, XATTR, record)
    except OSError as exc:
        if exc.errno not in NO_XATTR_ERRNOS:
            raise
        return False
    return True


def copy_fd(fd: int, sources: Sequence[BinaryIO], limit: int | None) -> bytes:
    """Write `sources` (at most `limit` bytes in all) to `fd`; their MD5."""
    md5 = hashlib.md5(usedforsecurity=False)
    remaining = limit
    for source in sources:
        while remaining is None or remaining > 0:
            want = COPY_BUFFER_BYTES if remaining is None else min(remaining, COPY_BUFFER_BYTES)
            block = source.read(want)
            if not block:
                break
            md5.update(block)
            write_all(fd, block)
            if remaining is not None:
                remaining -= len(block)
    return md5.digest()

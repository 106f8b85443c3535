"""Low-level file IO for the local connector: opening a file below a folder in one system
call, never through a link (Linux openat2), positioned reads, whole writes, syncfs, and the
small helpers that open, create and write a file in a folder's descriptor without following
a link.

`on_network_fs(path)` tells whether a folder's file system waits on a network (NFS, SMB,
FUSE mounts such as blobfuse or s3fs, Ceph...), from statfs(2)'s file system type.

`open_beneath(dir_fd, path, flags)` resolves `path` from `dir_fd` with RESOLVE_BENEATH (it
cannot leave the folder: no "..", no absolute path) and RESOLVE_NO_SYMLINKS (no link on the
way, the last component included). It answers None whenever it does not open the file, for
any reason: the caller then takes its slow path (a folder at a time with O_NOFOLLOW), which
gives the exact error. Kernels before 5.6, or a sandbox that forbids the call, disable it
for the process. See openat2(2).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import sys
from typing import BinaryIO

from bascule.connectors.base import ByteRange

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (added in 5.6)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
# Answers meaning "this kernel or sandbox has no openat2": stop trying.
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL})


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_libc = _load()
_LIBC_SYNC = _libc  # syncfs keeps working when openat2 turns out to be unsupported
READ_PIECE_BYTES = 16 * 1024 * 1024
# A new file is opened with these (and O_EXCL or O_TRUNC): never through a link.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(dir_fd: int, path: str, flags: int) -> int | None:
    """A descriptor on `path` below `dir_fd`, opened with `flags`, or None (see above)."""
    global _libc
    if _libc is None:
        return None
    how = _OpenHow(flags, 0, _RESOLVE)
    fd = int(_libc.syscall(_SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how), 24))
    if fd >= 0:
        return fd
    if ctypes.get_errno() in _UNSUPPORTED:
        _libc = None
    return None


# statfs(2) f_type of the file systems whose calls wait on a network (linux/magic.h).
NETWORK_FS_TYPES = frozenset(
    {
        0x6969,  # NFS
        0x517B,  # SMB
        0xFE534D42,  # SMB2
        0xFF534D42,  # CIFS
        0x65735546,  # FUSE (blobfuse, s3fs, sshfs, rclone mount...)
        0x00C36400,  # Ceph
        0x01021997,  # 9P
        0x5346414F,  # AFS
        0x0BD00BD0,  # Lustre
        0x47504653,  # GPFS
        0x01161970,  # GFS2
        0x7461636F,  # OCFS2
    }
)


def on_network_fs(path: str) -> bool | None:
    """Whether the folder `path` is on a network file system (see NETWORK_FS_TYPES); None
    when it cannot be told (no statfs, or it failed)."""
    if _LIBC_SYNC is None or not hasattr(_LIBC_SYNC, "statfs"):
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs: 120 bytes on 64-bit Linux
    if _LIBC_SYNC.statfs(os.fsencode(path), buf) != 0:
        return None
    f_type = ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF  # its first field
    return f_type in NETWORK_FS_TYPES


def syncfs(fd: int) -> None:
    """syncfs(2) on the file system of `fd` (one flush for many files), else sync(2)."""
    if _LIBC_SYNC is None or not hasattr(_LIBC_SYNC, "syncfs"):
        os.sync()
        return
    if _LIBC_SYNC.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def pread_all(fd: int, byte_range: ByteRange) -> bytes:
    """`byte_range` of the file (shorter at its end: the range is clipped)."""
    pieces = []
    offset, left = byte_range.start, byte_range.length
    while left:
        piece = os.pread(fd, min(left, READ_PIECE_BYTES), offset)
        if not piece:
            break
        pieces.append(piece)
        offset += len(piece)
        left -= len(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def unlink_quietly(dir_fd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def create_file(dir_fd: int, name: str, *, exclusive: bool = True) -> BinaryIO:
    """A new file `name` in `dir_fd`, opened for writing; never through a link."""
    flags = CREATE_FLAGS | (os.O_EXCL if exclusive else os.O_TRUNC)
    return os.fdopen(os.open(name, flags, 0o666, dir_fd=dir_fd), "wb")


def write_file(dir_fd: int, name: str, data: bytes) -> None:
    """Create or truncate `name` in `dir_fd` and write `data`; never through a link."""
    fd = os.open(name, CREATE_FLAGS | os.O_TRUNC, 0o666, dir_fd=dir_fd)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def open_file(dir_fd: int, name: str) -> BinaryIO:
    """`name` in `dir_fd` for reading; ELOOP if it is a link (never followed)."""
    return os.fdopen(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd), "rb")


class Closing(contextlib.AbstractContextManager[int]):
    """A descriptor as a context: closed on exit (a class, not a generator: the local
    connector enters one several times per small object)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> int:
        return self._fd

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

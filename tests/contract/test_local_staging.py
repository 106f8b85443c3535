"""How the local connector stages a put: without a name (O_TMPFILE) where the kernel and the
file system allow, so that nothing shows before the object and a crash leaves nothing; under a
hidden staging name elsewhere. Either way the object appears at once, with its record."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bascule.connectors import file_records, record_codec
from bascule.connectors.local import LocalConnector
from bascule.errors import ConnectorError

STAGING = ".bascule-put-"
# A put whose source stops after its first block, once the file is open: a child process
# that tells the test (one line on stdout) and then waits to be killed.
_STALLED_PUT = """
import io, sys
from pathlib import Path
from bascule.connectors import file_records
from bascule.connectors.local import LocalConnector

class Stalling(io.RawIOBase):
    def __init__(self):
        self.sent = False
    def readable(self):
        return True
    def read(self, size=-1):
        if not self.sent:
            self.sent = True
            return b"x" * 4096
        print("writing", flush=True)
        sys.stdin.read()  # until killed
        return b""

if sys.argv[2] == "named":
    file_records._TMPFILE_FLAGS = None
LocalConnector(Path(sys.argv[1])).put("d/o.bin", Stalling(), 8192)
"""


@pytest.fixture(params=["anonymous", "named"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test in both ways: "named" as on a file system without O_TMPFILE."""
    if request.param == "named":
        monkeypatch.setattr(file_records, "_TMPFILE_FLAGS", None)
    yield request.param


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_record_is_on_the_file_before_it_takes_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """No reader ever sees the object without its record: the file gets it first, on the
    descriptor it was written through, and the link or rename keeps the etag it names."""
    conn = LocalConnector(tmp_path)
    real_link, real_replace = os.link, os.replace
    seen: list[dict[str, object]] = []

    def linking(src: str, dst: str, **kwargs: object) -> None:
        seen.append(record_codec.decode(os.getxattr(src, file_records.XATTR)))  # /proc/self/fd/N
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    def replacing(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        staged = f"/proc/self/fd/{src_dir_fd}/{src}"
        seen.append(record_codec.decode(os.getxattr(staged, file_records.XATTR)))
        real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "link", linking)
    monkeypatch.setattr(os, "replace", replacing)
    info = conn.put("d/o", io.BytesIO(b"payload"), 7, metadata={"Owner": "hdh"})
    monkeypatch.undo()
    md5 = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    assert seen == [{"etag": info.etag, "content-md5": md5, "metadata": {"owner": "hdh"}}]
    assert conn.stat("d/o").etag == info.etag
    assert conn.stat("d/o").checksums == {"content-md5": md5}


def test_a_new_key_is_linked_into_place_and_nothing_shows_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = LocalConnector(tmp_path)
    conn.put("d/first", io.BytesIO(b"1"), 1)  # the folder exists
    during: list[list[str]] = []

    class Watching(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
            if during:
                return 0
            during.append(_names(tmp_path / "d"))
            buffer[:5] = b"hello"
            return 5

    renames: list[str] = []
    real = os.replace

    def replacing(src: str, dst: str, **kwargs: int) -> None:
        renames.append(src)
        real(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replacing)
    conn.put("d/second", io.BufferedReader(Watching()), 5)
    assert during == [["first"]]  # no staging name in the folder while the file was written
    assert renames == []  # a free name takes one link, no rename
    assert _names(tmp_path / "d") == ["first", "second"]
    with conn.open_read("d/second") as body:
        assert body.read() == b"hello"


def test_an_object_written_again_replaces_the_old_one_whole(tmp_path: Path, mode: str) -> None:
    conn = LocalConnector(tmp_path)
    old = conn.put("d/o", io.BytesIO(b"old version"), 11)
    new = conn.put("d/o", io.BytesIO(b"new"), 3, metadata={"v": "2"})
    assert new.etag != old.etag
    assert _names(tmp_path / "d") == ["o"]
    assert conn.stat("d/o").metadata == {"v": "2"}
    with conn.open_read("d/o") as body:
        assert body.read() == b"new"


def test_a_put_that_fails_at_the_rename_leaves_the_old_object_and_no_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    conn = LocalConnector(tmp_path)
    conn.put("d/o", io.BytesIO(b"old"), 3)

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(ConnectorError, match="Input/output error"):
        conn.put("d/o", io.BytesIO(b"new"), 3)
    monkeypatch.undo()
    assert _names(tmp_path / "d") == ["o"]
    with conn.open_read("d/o") as kept:
        assert kept.read() == b"old"


def test_a_file_system_without_anonymous_files_gets_named_staging_asked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = LocalConnector(tmp_path)
    real = os.open
    refused: list[int] = []

    def without_tmpfile(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            refused.append(flags)
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", without_tmpfile)
    for n in range(3):
        conn.put(f"d/o{n}", io.BytesIO(b"data"), 4)
    monkeypatch.undo()
    assert len(refused) == 1  # then this connector stages under names
    assert _names(tmp_path / "d") == ["o0", "o1", "o2"]
    assert [o.key for o in conn.list()] == ["d/o0", "d/o1", "d/o2"]


def test_a_put_killed_while_it_writes_leaves_nothing_behind(tmp_path: Path, mode: str) -> None:
    """SIGKILL in the middle of a put: without a name, the kernel frees the file; with a
    staging name (file systems without O_TMPFILE) that file stays, and is never listed."""
    (tmp_path / "d").mkdir()
    with subprocess.Popen(
        [sys.executable, "-c", _STALLED_PUT, str(tmp_path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "writing"  # the file is open, half written
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
    left = _names(tmp_path / "d")
    if mode == "anonymous":
        assert left == []
    else:
        assert len(left) == 1 and left[0].startswith(STAGING)
    assert list(LocalConnector(tmp_path).list()) == []


def test_a_kernel_that_refuses_to_name_an_anonymous_file_gets_a_retry_under_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox may give O_TMPFILE but refuse the link through /proc: that put fails as a
    transient error (its retry writes it again), and every later put stages under a name."""
    conn = LocalConnector(tmp_path)
    (tmp_path / "d").mkdir()
    real = os.link
    tried: list[str] = []

    def refusing(src: str, dst: str, **kwargs: object) -> None:
        if src.startswith("/proc/self/fd/"):
            tried.append(dst)
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", refusing)
    with pytest.raises(ConnectorError, match="writing it again under a staging name") as caught:
        conn.put("d/o", io.BytesIO(b"data"), 4)
    assert conn.should_retry(caught.value)
    assert _names(tmp_path / "d") == []  # the anonymous file went with its descriptor
    conn.put("d/o", io.BytesIO(b"data"), 4)  # the retry
    conn.put("d/p", io.BytesIO(b"more"), 4)
    monkeypatch.undo()
    assert tried == ["o"]  # asked once
    assert _names(tmp_path / "d") == ["o", "p"]
    with conn.open_read("d/o") as body:
        assert body.read() == b"data"

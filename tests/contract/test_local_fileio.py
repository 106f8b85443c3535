"""The local connector's one-call open (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS):
a link anywhere on the way, or a way out of the folder, is never opened; then the connector's
folder-at-a-time path answers, with its own errors."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bascule.connectors import fileio, local
from bascule.connectors.local import LocalConnector
from bascule.errors import ObjectNotFound, UnsupportedOperation


@pytest.fixture
def root(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"data")
    (tmp_path / "outside").write_bytes(b"not ours")
    (tmp_path / "link-dir").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "b" / "link-file").symlink_to("f")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_open_beneath_opens_a_nested_file(root: int) -> None:
    fd = fileio.open_beneath(root, "a/b/f", os.O_RDONLY)
    if fd is None:
        pytest.fail("openat2 unavailable on this kernel: the one-call path is never taken")
    with os.fdopen(fd, "rb") as fh:
        assert fh.read() == b"data"


@pytest.mark.parametrize(
    "path", ["link-dir/b/f", "a/b/link-file", "../x", "/etc/passwd", "a/b/none"]
)
def test_open_beneath_never_opens_through_a_link_or_out_of_the_folder(root: int, path: str) -> None:
    assert fileio.open_beneath(root, path, os.O_RDONLY) is None


def _read(conn: LocalConnector, key: str) -> bytes:
    with conn.open_read(key) as stream:
        return stream.read()


def test_open_read_takes_one_call_and_falls_back_with_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c").mkdir()
    conn = LocalConnector(tmp_path / "c")
    conn.put("x/y/z/obj", io.BytesIO(b"payload"), 7)
    (tmp_path / "c" / "x" / "y" / "swapped").symlink_to(tmp_path / "c" / "x" / "y" / "z")
    opened: list[str] = []
    real = fileio.open_beneath

    def spy(dir_fd: int, path: str, flags: int) -> int | None:
        found = real(dir_fd, path, flags)
        opened.append(path if found is not None else f"-{path}")
        return found

    monkeypatch.setattr(local, "open_beneath", spy)
    assert _read(conn, "x/y/z/obj") == b"payload"
    assert opened == ["x/y/z/obj"]
    with pytest.raises((ObjectNotFound, UnsupportedOperation)):
        conn.open_read("x/y/swapped/obj")  # refused by both paths: a link on the way
    assert opened[-1] == "-x/y/swapped/obj"
    monkeypatch.setattr(local, "open_beneath", lambda *_: None)  # a kernel without openat2
    assert _read(conn, "x/y/z/obj") == b"payload"
    with pytest.raises((ObjectNotFound, UnsupportedOperation)):
        conn.open_read("x/y/swapped/obj")

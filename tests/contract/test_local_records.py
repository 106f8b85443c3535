"""The local connector's records (MD5 and metadata of the files it wrote): read by a listing
only when asked for, and still what `stat` says."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import pytest

from bascule.connectors import file_records, local
from bascule.connectors.local import LocalConnector
from bascule.errors import ConnectorError


def test_a_listing_reads_a_record_only_when_it_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = LocalConnector(tmp_path)
    for name in ("a", "b", "c"):
        conn.put(f"d/{name}", io.BytesIO(name.encode()), 1, metadata={"name": name})
    reads: list[str] = []
    by_fd, by_path = file_records.xattr_record, file_records.xattr_at

    def counted_fd(fd: int, name: str) -> dict[str, object]:
        reads.append(name)
        return by_fd(fd, name)

    def counted_path(path: str) -> dict[str, object]:
        reads.append(Path(path).name)
        return by_path(path)

    monkeypatch.setattr(local, "xattr_record", counted_fd)
    monkeypatch.setattr(local, "xattr_at", counted_path)
    listed = list(conn.list("d/"))
    assert [o.key for o in listed] == ["d/a", "d/b", "d/c"] and reads == []
    assert listed[1].metadata == {"name": "b"} and reads == ["b"]
    assert listed[1].checksums == conn.stat("d/b").checksums  # one read per file, then cached
    assert reads == ["b", "b"]  # the second read was stat's own
    copied = pickle.loads(pickle.dumps(listed[2]))  # as tasks carry it: plain dicts
    assert type(copied.metadata) is dict and copied.metadata == {"name": "c"}


def test_a_put_file_carries_its_record_before_it_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No reader ever sees the object without its record: the staged file gets it first, on
    the descriptor it was written through, and the rename keeps the etag it names."""
    conn = LocalConnector(tmp_path)
    real = os.replace
    at_rename: list[dict[str, object]] = []

    def spying(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        staged = f"/proc/self/fd/{src_dir_fd}/{src}"
        at_rename.append(json.loads(os.getxattr(staged, file_records.XATTR)))
        real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "replace", spying)
    info = conn.put("d/o", io.BytesIO(b"payload"), 7, metadata={"Owner": "hdh"})
    monkeypatch.undo()
    md5 = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    assert at_rename == [{"etag": info.etag, "content-md5": md5, "metadata": {"owner": "hdh"}}]
    assert conn.stat("d/o").etag == info.etag
    assert conn.stat("d/o").checksums == {"content-md5": md5}


def test_a_put_that_fails_at_the_rename_leaves_neither_object_nor_staging_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = LocalConnector(tmp_path)
    conn.put("d/o", io.BytesIO(b"old"), 3)

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(ConnectorError, match="Input/output error"):
        conn.put("d/o", io.BytesIO(b"new"), 3)
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["o"]
    with conn.open_read("d/o") as kept:
        assert kept.read() == b"old"

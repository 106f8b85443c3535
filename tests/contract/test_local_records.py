"""The local connector's records (MD5 and metadata of the files it wrote): read by a listing
only when asked for, and still what `stat` says."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest

from bascule.connectors import file_records, local
from bascule.connectors.local import LocalConnector


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

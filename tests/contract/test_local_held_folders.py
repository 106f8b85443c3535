"""While a batch holds its folders (`LocalConnector.holding_folders`), each folder is opened
once, not once per object; nothing is written or read through a link, a folder removed in
the meantime is made again, and every descriptor is closed when the batch ends."""

from __future__ import annotations

import io
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bascule.connectors.base import ByteRange, holds_folders
from bascule.connectors.local import LocalConnector

KEYS = [f"year=2024/month=01/part-{i:03d}.csv" for i in range(20)]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _put_all(conn: LocalConnector, keys: list[str]) -> None:
    for key in keys:
        conn.put_unsynced(key, io.BytesIO(key.encode()), len(key))


def _counting_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folder names `os.open` is asked for (dir_fd or not), from now on."""
    seen: list[str] = []
    real: Callable[..., int] = os.open

    def counting(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_DIRECTORY:
            seen.append(os.fsdecode(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting)
    return seen


def test_the_local_connector_holds_folders() -> None:
    assert holds_folders(LocalConnector(Path("/nonexistent")))


def test_a_held_batch_opens_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = LocalConnector(tmp_path)
    _put_all(conn, KEYS[:1])  # the folders exist: only opens are counted below
    opens = _counting_opens(monkeypatch)
    _put_all(conn, KEYS)
    unheld = opens.count("month=01")
    opens.clear()
    with conn.holding_folders():
        _put_all(conn, KEYS)
    assert unheld == len(KEYS)
    assert opens.count("month=01") == 1
    assert {p.name for p in (tmp_path / "year=2024" / "month=01").iterdir()} >= {
        k.rsplit("/", 1)[1] for k in KEYS
    }


def test_held_reads_open_the_root_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = LocalConnector(tmp_path)
    _put_all(conn, KEYS)
    opens = _counting_opens(monkeypatch)
    with conn.holding_folders():
        for key in KEYS:
            with conn.open_read(key, ByteRange(0, len(key))) as stream:
                assert stream.read() == key.encode()
    assert opens.count(str(tmp_path)) == 1


def test_every_held_descriptor_is_closed_at_the_end(tmp_path: Path) -> None:
    conn = LocalConnector(tmp_path)
    before = _open_fds()
    with conn.holding_folders():
        _put_all(conn, KEYS)
        assert _open_fds() > before
    assert _open_fds() == before


def test_a_folder_removed_while_held_is_made_again(tmp_path: Path) -> None:
    conn = LocalConnector(tmp_path)
    with conn.holding_folders():
        _put_all(conn, KEYS[:2])
        shutil.rmtree(tmp_path / "year=2024")
        _put_all(conn, KEYS[2:4])
    for key in KEYS[2:4]:
        assert (tmp_path / key).read_bytes() == key.encode()


def test_a_held_folder_swapped_for_a_link_is_not_written_through(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    conn = LocalConnector(root)
    with conn.holding_folders():
        _put_all(conn, KEYS[:1])
        (root / "year=2024").rename(root / "moved")
        (root / "year=2024").symlink_to(outside, target_is_directory=True)
        _put_all(conn, KEYS[1:3])
    assert list(outside.iterdir()) == []
    assert (root / "moved" / "month=01" / KEYS[2].rsplit("/", 1)[1]).exists()
    # Once the batch is over, the link is refused as always.
    with pytest.raises(Exception, match="link"):
        _put_all(conn, KEYS[3:4])


def test_holding_is_per_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = LocalConnector(tmp_path)
    _put_all(conn, KEYS[:1])
    opens = _counting_opens(monkeypatch)
    with conn.holding_folders():
        _put_all(conn, KEYS[:1])
        other = threading.Thread(target=_put_all, args=(conn, KEYS[1:4]))
        other.start()
        other.join()
    # the held thread opened the folder once; the other one, unheld, once per object
    assert opens.count("month=01") == 1 + 3

"""The local connector never acts through a symbolic link: reads, writes, folder creation,
deletes, staging and listing all stay inside the root, on real folders."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from bascule.connectors import record_codec
from bascule.connectors.local import LocalConnector
from bascule.errors import ConnectorError, ObjectNotFound

SECRET = b"outside the root: never copy me"


@pytest.fixture()
def layout(tmp_path: Path) -> tuple[LocalConnector, Path, Path]:
    """A root, and a folder outside it holding a victim file."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "victim.txt").write_bytes(SECRET)
    return LocalConnector(root), root, outside


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def test_put_through_a_linked_folder_is_refused_and_writes_nothing_outside(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConnectorError, match="link"):
        conn.put("link/planted.txt", io.BytesIO(b"x"), 1)
    with pytest.raises(ConnectorError, match="link"):
        conn.put("link/sub/planted.txt", io.BytesIO(b"x"), 1)
    assert _files(outside) == {"victim.txt": SECRET}


def test_put_over_a_link_replaces_the_link_not_its_target(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    (root / "a.txt").symlink_to(outside / "victim.txt")
    conn.put("a.txt", io.BytesIO(b"new"), 3)
    assert not (root / "a.txt").is_symlink()
    assert (root / "a.txt").read_bytes() == b"new"
    assert (outside / "victim.txt").read_bytes() == SECRET


def test_delete_through_a_link_deletes_nothing_outside(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "file-link").symlink_to(outside / "victim.txt")
    conn.delete("link/victim.txt")
    conn.delete("file-link")
    assert (outside / "victim.txt").read_bytes() == SECRET
    assert (root / "link").is_symlink()


def test_a_source_file_swapped_for_a_link_is_never_read(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    (root / "ds").mkdir()
    (root / "ds" / "a.csv").write_bytes(b"planned")
    planned = conn.stat("ds/a.csv")
    (root / "ds" / "a.csv").unlink()
    (root / "ds" / "a.csv").symlink_to(outside / "victim.txt")
    with pytest.raises(ObjectNotFound, match="link"):
        conn.stat("ds/a.csv")
    for if_match in (None, planned.etag):
        with pytest.raises(ObjectNotFound, match="link"):
            conn.open_read("ds/a.csv", if_match=if_match).read()
    (root / "ds" / "a.csv").unlink()
    (root / "ds").rmdir()
    (root / "ds").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ObjectNotFound, match="link"):
        conn.open_read("ds/victim.txt").read()


def test_list_neither_shows_links_nor_descends_into_linked_folders(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    (root / "ds").mkdir()
    (root / "ds" / "real.csv").write_bytes(b"r")
    (root / "ds" / "file-link").symlink_to(outside / "victim.txt")
    (root / "ds" / "dir-link").symlink_to(outside, target_is_directory=True)
    (root / "top-link").symlink_to(outside, target_is_directory=True)
    assert [o.key for o in conn.list()] == ["ds/real.csv"]
    assert list(conn.list("top-link/")) == []
    assert list(conn.list("ds/dir-link/")) == []


def test_linked_staging_and_metadata_folders_are_not_written_through(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    (root / ".bascule-uploads").symlink_to(outside, target_is_directory=True)
    (root / ".bascule-meta").symlink_to(outside, target_is_directory=True)
    conn.put("a.txt", io.BytesIO(b"plain"), 5, metadata={"k": "v"})  # uses neither folder
    assert conn.stat("a.txt").metadata == {"k": "v"}
    with pytest.raises(ConnectorError, match="link"):
        conn.open_writer("big.bin")
    assert _files(outside) == {"victim.txt": SECRET}


@pytest.fixture()
def no_xattrs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without extended attributes: metadata goes to sidecars."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", refuse)


@pytest.mark.usefixtures("no_xattrs")
def test_a_linked_metadata_folder_is_not_written_through(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    (root / ".bascule-meta").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConnectorError, match="link"):
        conn.put("a.txt", io.BytesIO(b"plain"), 5, metadata={"k": "v"})
    assert _files(outside) == {"victim.txt": SECRET}
    assert [p.name for p in root.iterdir() if p.name.startswith(".bascule-put-")] == []


@pytest.mark.usefixtures("no_xattrs")
def test_without_extended_attributes_metadata_lives_in_a_sidecar(tmp_path: Path) -> None:
    conn = LocalConnector(tmp_path)
    conn.put("d/a.txt", io.BytesIO(b"plain"), 5, metadata={"k": "v"})
    assert (tmp_path / ".bascule-meta" / "d" / "a.txt.json").is_file()
    assert conn.stat("d/a.txt").metadata == {"k": "v"}
    assert [o.metadata for o in conn.list("d/")] == [{"k": "v"}]


def test_metadata_lives_with_the_file_and_staging_names_are_never_objects(
    tmp_path: Path,
) -> None:
    conn = LocalConnector(tmp_path)
    conn.put("d/a.txt", io.BytesIO(b"plain"), 5, metadata={"k": "v"})
    assert not (tmp_path / ".bascule-meta").exists()  # one file per object
    record = record_codec.decode(os.getxattr(tmp_path / "d" / "a.txt", "user.bascule"))
    assert record["metadata"] == {"k": "v"}
    (tmp_path / "d" / ".bascule-put-0123abcd").write_bytes(b"half-written")  # a crashed put
    assert [o.key for o in conn.list()] == ["d/a.txt"]
    assert conn.key_problem("d/.bascule-put-0123abcd") is not None
    (tmp_path / "d" / "a.txt").write_bytes(b"changed")  # by someone else, in place
    assert conn.stat("d/a.txt").metadata == {}  # the record no longer describes the file


def test_multipart_parts_are_not_written_through_a_swapped_upload_folder(
    layout: tuple[LocalConnector, Path, Path],
) -> None:
    conn, root, outside = layout
    writer = conn.open_writer("big.bin")
    staged = root / ".bascule-uploads" / writer.resume_token
    for name in os.listdir(staged):
        os.unlink(staged / name)
    staged.rmdir()
    staged.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConnectorError):
        writer.write_part(1, b"plaintext part")
    conn.abort_upload("big.bin", writer.resume_token)
    assert _files(outside) == {"victim.txt": SECRET}


def test_a_failed_put_leaves_no_staging_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    conn = LocalConnector(root)
    conn.put("a", io.BytesIO(b"1"), 1)
    with pytest.raises(ConnectorError):
        conn.put("a/b", io.BytesIO(b"plaintext"), 9)  # "a" is a file: no folder there
    (root / "c" / "d").mkdir(parents=True)
    with pytest.raises(ConnectorError):
        conn.put("c/d", io.BytesIO(b"plaintext"), 9)  # staged, then the rename is refused
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["a", "c", "c/d"]

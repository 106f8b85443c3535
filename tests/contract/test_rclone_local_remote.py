"""Keys stay inside an rclone remote's root: an rclone `local` remote (defined by environment
variables) through the rclone connector and through the endpoint builder."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bascule.config import RcloneEndpoint
from bascule.connectors.rclone import RcloneConnector
from bascule.endpoints import EndpointRef, build_connector
from bascule.errors import UnsupportedOperation

LOCAL_REMOTE_ENV = {"RCLONE_CONFIG_LOC_TYPE": "local"}


@pytest.fixture()
def local_remote(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An rclone remote `loc` of type local; the working directory is its root when the
    remote is used without a path."""
    for name, value in LOCAL_REMOTE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RCLONE_CONFIG", str(tmp_path / "no-rclone.conf"))
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


def _everything(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "key", ["ds/../../escaped.txt", "../escaped.txt", "ds/./a.txt", "/abs.txt", "ds//a.txt"]
)
def test_keys_that_leave_the_remote_are_refused(local_remote: Path, key: str) -> None:
    remote_root = local_remote / "remote"
    remote_root.mkdir()
    conn = RcloneConnector(f"loc:{remote_root}")
    assert conn.key_problem(key) is not None
    with pytest.raises(UnsupportedOperation, match="rename"):
        conn.put(key, io.BytesIO(b"x"), 1)
    for call in (conn.stat, conn.delete, conn.open_read):
        with pytest.raises(UnsupportedOperation):
            call(key)
    assert _everything(local_remote.parent) == set()


def test_a_remote_without_a_bucket_never_builds_an_absolute_path(local_remote: Path) -> None:
    # Relative to the working directory, this key names a folder inside the root; as an
    # absolute path ("loc:/<key>") it would land beside the root instead.
    escaped = local_remote.parent / "escaped.txt"
    key = str(escaped).lstrip("/")
    ref = EndpointRef.of("r", RcloneEndpoint(kind="rclone", remote="loc"), "")
    conn = build_connector(ref)
    conn.put(key, io.BytesIO(b"x"), 1)
    assert not escaped.exists()
    assert (local_remote / key).read_bytes() == b"x"
    assert [o.key for o in conn.list()] == [key]


def test_local_remote_rules_follow_the_filesystem(local_remote: Path) -> None:
    conn = RcloneConnector(f"loc:{local_remote}")
    assert conn.key_problem("ds/" + "n" * 255) is None
    assert "255" in (conn.key_problem("ds/" + "n" * 256) or "")
    assert conn.key_problem("ds/a\x00b") is not None
    assert conn.key_problem("données/été.csv") is None

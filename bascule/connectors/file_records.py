"""What the local connector records of each file it writes (its MD5 and metadata, with the
etag they describe), as extended attributes: reading them for a whole listing would cost a
disk read per file, so a listing's records are read when first asked for.

`XATTR` names the attribute; its value is the JSON object the sidecars hold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping

XATTR = "user.bascule"


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
            loaded = json.loads(os.getxattr(fd, XATTR))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def xattr_at(path: str) -> dict[str, object]:
    """The record in the extended attribute of the file at `path` (a link at the end of the
    path is not followed), {} when there is none."""
    try:
        loaded = json.loads(os.getxattr(path, XATTR, follow_symlinks=False))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}

"""Folder descriptors that one thread keeps open for a while, for the `local` connector.

Why: a batch of small objects would otherwise open the root and every folder of each key
again for each object, and close them after (20,000 tiny files: 10 % of a worker's CPU,
327 to 293 us per object with every folder kept). `LocalConnector.holding_folders` keeps
the folders that `_dir` opens, as `_dir` opens them (one at a time from the root, never
through a link), until the batch ends; then they are closed.

What holding changes, in the window of one batch: a folder removed in the window is seen
(a removed folder has no link left) and opened again from the root; a folder renamed in the
window takes the batch's next writes under its new name, as it would have taken a write
made just before the rename. Nothing is ever written or read through a link.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

# Folders one thread holds at most (a batch of 64 objects touches a few); past it, all are
# closed and opened again as needed.
HELD_MAX = 256

Folder = tuple[str, ...]


class HeldFolders:
    """Per thread: a table folder -> open descriptor, while `holding()` is entered."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _table(self) -> dict[Folder, int] | None:
        table: dict[Folder, int] | None = getattr(self._local, "fds", None)
        return table

    @property
    def active(self) -> bool:
        return self._table() is not None

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the folders opened in this thread until exit (nested: the outer one holds)."""
        if self.active:
            yield
            return
        self._local.fds = {}
        try:
            yield
        finally:
            table, self._local.fds = self._local.fds, None
            _close_all(table)

    def get(self, folder: Folder, open_: Callable[[], int]) -> int:
        """The held descriptor of `folder`, opened with `open_()` when not held yet or when
        the folder was removed since (it is not closed by the caller)."""
        table = self._table()
        assert table is not None, "get() outside holding()"
        fd = table.get(folder)
        if fd is not None:
            if os.fstat(fd).st_nlink:
                return fd
            del table[folder]
            os.close(fd)
        if len(table) >= HELD_MAX:
            _close_all(table)
        fd = table[folder] = open_()
        return fd


def _close_all(table: dict[Folder, int]) -> None:
    fds = list(table.values())
    table.clear()
    for fd in fds:
        os.close(fd)

"""One writer per journal: an exclusive lock held for the whole run.

The lock is `flock(2)` on ``<journal>.lock`` beside the journal. The kernel holds it for the
open file description and drops it when the process ends, however it ends (SIGKILL
included), so a dead holder never blocks the next run: its lock is simply free to take, and
nothing has to guess whether a pid is still alive. The file also says who holds the lock
(host, pid, command, since when) so that a refused writer can name the holder; a file whose
lock is free but which still names a holder is the trace of a writer that died, and the
next writer takes it over and says so.

Readers (`plan`, `status`, `report`) never take the lock: SQLite's WAL lets them read while
the writer writes.

Why not a lease in the database, or pid files: a row or a pid file outlives a killed holder
and needs a liveness guess (pids are reused, hosts differ); flock cannot go stale. Like
SQLite's WAL itself, flock needs the journal on a local file system, not NFS or SMB (the
README says so).

Within one process the lock is re-entrant: a runbook that holds it runs `migrate` and
`verify` steps that ask for it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bascule.errors import JournalError


class JournalLocked(JournalError):
    """Another process writes this journal now (exit 2)."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a journal's writer lock."""

    host: str
    pid: int
    command: str
    since: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.since))
        return f"pid {self.pid} on {self.host} ({self.command!r}, since {since})"

    @classmethod
    def current(cls, command: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), command, time.time())


def lock_path_for(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".lock")


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[Path, _Held] = {}
_held_guard = threading.Lock()


class WriterLock:
    """The exclusive writer lock of one journal, as a context manager.

    `acquire` raises JournalLocked (exit 2) naming the holder when another process holds
    it; it never waits. After the first `acquire` in this process, `took_over` is the holder
    a previous writer left recorded when it died holding the lock (None after a clean end)."""

    def __init__(self, journal_path: Path, command: str) -> None:
        self.path = lock_path_for(journal_path).resolve()
        self.command = command
        self.took_over: Holder | None = None

    def acquire(self) -> WriterLock:
        with _held_guard:
            held = _held.get(self.path)
            if held is not None:
                held.count += 1
                return self
            fd = self._take()
            self.took_over = _read_holder(fd)
            _write_holder(fd, Holder.current(self.command))
            _held[self.path] = _Held(fd, 1)
        return self

    def release(self) -> None:
        with _held_guard:
            held = _held.get(self.path)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _held[self.path]
            os.ftruncate(held.fd, 0)  # a clean release leaves no holder to take over
            os.close(held.fd)  # closing drops the flock

    def _take(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise JournalLocked(
                f"journal {self.path.with_suffix('')} is being written by {who}; wait for it "
                "to finish (or stop it: the next run resumes), or use another journal"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def current_holder(journal_path: Path) -> Holder | None:
    """Who holds the writer lock now; None when nobody does (read-only, never blocks)."""
    path = lock_path_for(journal_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
        return Holder(str(data["host"]), int(data["pid"]), str(data["command"]), data["since"])
    except (ValueError, KeyError, TypeError):
        return None  # not ours to interpret: the lock itself is what counts


def _write_holder(fd: int, holder: Holder) -> None:
    body = json.dumps(holder.__dict__).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, body, 0)
    os.fsync(fd)

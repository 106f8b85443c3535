"""The journal's writer lock: one writer at a time, re-entrant in one process, readers free,
and a holder killed with SIGKILL leaves a lock the next writer takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bascule.migration.journal import Journal
from bascule.migration.lock import JournalLocked, WriterLock, current_holder, lock_path_for

HOLD = """
import sys, time
from bascule.migration.journal import Journal
j = Journal(__import__("pathlib").Path(sys.argv[1]), "fp", command="bascule migrate -c x.yaml")
print("held", flush=True)
time.sleep(600)
"""


def hold_in_child(journal: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(journal)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    """Signal the child by its pid, reap it, and close its pipe."""
    os.kill(proc.pid, sig)
    proc.communicate(timeout=30)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    child = hold_in_child(journal)
    try:
        with pytest.raises(JournalLocked) as caught:
            Journal(journal, "fp")
        message = str(caught.value)
        assert f"pid {child.pid} on " in message
        assert "'bascule migrate -c x.yaml'" in message
        assert "since 20" in message
        assert caught.value.exit_code == 2
        holder = current_holder(journal)
        assert holder is not None and holder.pid == child.pid
    finally:
        stop(child)


def test_readers_open_the_journal_while_a_writer_holds_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    child = hold_in_child(journal)
    try:
        reader = Journal(journal, "fp", create=False)
        assert reader.runs() == []
        reader.close()
    finally:
        stop(child)


def test_a_holder_killed_with_sigkill_leaves_a_lock_the_next_writer_takes_over(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.db"
    child = hold_in_child(journal)
    stop(child)
    assert current_holder(journal) is None  # the kernel dropped the flock with the process
    writer = Journal(journal, "fp")
    try:
        rows = writer._db.execute("SELECT kind, detail FROM events").fetchall()
        assert [kind for kind, _ in rows] == ["lock-taken-over"]
        assert f'"pid": {child.pid}' in rows[0][1]
    finally:
        writer.close()
    # a clean close leaves no holder behind: the next writer takes over nothing
    again = Journal(journal, "fp")
    try:
        assert again._db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    finally:
        again.close()


def test_the_lock_is_reentrant_within_one_process_and_released_by_the_last_close(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.db"
    outer = Journal(journal, "fp")
    inner = Journal(journal, "fp")  # a runbook step running migrate inside a runbook run
    inner.close()
    holder = current_holder(journal)
    assert holder is not None and holder.pid == os.getpid()
    outer.close()
    assert current_holder(journal) is None


def test_lock_file_is_private_and_names_this_process(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    with WriterLock(journal, "bascule verify"):
        path = lock_path_for(journal)
        assert path.stat().st_mode & 0o777 == 0o600
        holder = current_holder(journal)
        assert holder is not None
        assert (holder.pid, holder.command) == (os.getpid(), "bascule verify")
        assert abs(holder.since - time.time()) < 60
    assert current_holder(journal) is None

"""The journal: configuration binding, wrapped file keys, attempts that survive a reopen."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from bascule.errors import JournalError
from bascule.migration.journal import Journal, KeyWrapper, PartRow, key_path_for


def _begin(journal: Journal, key: str = "dst/a", etag: str = "e1") -> int:
    row = journal.begin_object(
        {"dataset": "ds", "source_key": "src/a", "target_key": key, "source_etag": etag,
         "source_size": 10, "target_size": 200, "encrypt": 1, "part_size": 8 << 20,
         "parts": 2, "header": b"hdr", "nonce": b"n" * 16, "wrapped_key": b"w",
         "resume_token": "tok", "run_id": 1}
    )  # fmt: skip
    return row.id


def test_journal_refuses_another_configuration(tmp_path: Path) -> None:
    Journal(tmp_path / "j.db", "config-a").close()
    with pytest.raises(JournalError, match="another configuration"):
        Journal(tmp_path / "j.db", "config-b")


def test_journal_rejects_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="not a usable bascule journal"):
        Journal(path, "config-a")


def test_parts_and_state_survive_reopen_and_new_generation_drops_old_parts(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, "c")
    oid = _begin(journal)
    journal.record_part(oid, PartRow(1, 8, 9, "p" * 64, "c" * 64, "etag1"))
    assert journal.add_attempt(oid, 1, 2, "boom") == 1
    journal.close()
    again = Journal(path, "c")
    row = again.get_object("ds", "dst/a")
    assert row is not None and row.state == "in_progress" and row.resume_token == "tok"
    assert [p.number for p in again.parts(oid)] == [1]
    assert again.attempts(oid, 1, 2) == 1
    new = _begin(again, etag="e2")
    fresh = again.get_object("ds", "dst/a")
    assert fresh is not None and fresh.generation == 2 and again.parts(new) == []
    again.commit_object(new, "pc-1", "cc-1", "etag", 2)
    done = again.get_object("ds", "dst/a")
    assert done is not None and done.state == "committed"
    assert done.wrapped_key is None and done.header is None  # nothing secret kept once done


def test_journal_is_wal_and_holds_no_plaintext_file_key(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    wrapper = KeyWrapper.load_or_create(key_path_for(path))
    file_key = os.urandom(16)
    wrapped = wrapper.wrap(file_key, "ds/dst/a")
    journal = Journal(path, "c")
    journal.begin_object({"dataset": "ds", "source_key": "s", "target_key": "dst/a",
                          "source_etag": "e", "source_size": 1, "target_size": 1, "encrypt": 1,
                          "part_size": 1, "parts": 1, "wrapped_key": wrapped})  # fmt: skip
    journal.close()
    raw = path.read_bytes() + (path.with_name("j.db-wal").read_bytes()
                               if path.with_name("j.db-wal").exists() else b"")  # fmt: skip
    assert file_key not in raw
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert wrapper.unwrap(wrapped, "ds/dst/a") == file_key
    with pytest.raises(JournalError, match="does not match"):
        wrapper.unwrap(wrapped, "ds/other")


def test_key_file_is_private_and_shared_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db.key"
    KeyWrapper.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    with pytest.raises(JournalError, match="chmod 600"):
        KeyWrapper.load(path)

"""Which part checksum an unfinished upload was opened with, as the journal records it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bascule.migration.journal import Journal, Uploads
from bascule.migration.part_checksums import (
    ResumeGuard,
    checksum_at,
    read_history,
    record_run,
)


def _opened(journal: Journal, run_id: int, token: str) -> None:
    uploads = Uploads(journal)
    uploads.opened(uploads.opening("ds", f"key-{token}", run_id, []), token)


def _guard(journal: Journal, run_id: int, modes: dict[str, str]) -> ResumeGuard:
    return ResumeGuard(journal, record_run(journal, run_id, modes), modes)


def test_a_pair_is_added_only_when_a_run_starts_with_another_checksum(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", "cfg")
    try:
        runs = [journal.start_run("migrate") for _ in range(4)]
        record_run(journal, runs[0], {"scw": "content-md5", "aws": "sha256"})
        record_run(journal, runs[1], {"scw": "content-md5", "aws": "sha256"})
        record_run(journal, runs[2], {"scw": "sha256", "aws": "sha256"})
        record_run(journal, runs[3], {"scw": "content-md5", "aws": "sha256"})
        assert read_history(journal) == {
            "aws": [(runs[0], "sha256")],
            "scw": [(runs[0], "content-md5"), (runs[2], "sha256"), (runs[3], "content-md5")],
        }
    finally:
        journal.close()
    reopened = Journal(tmp_path / "j.db", "cfg")  # the record is durable
    try:
        assert read_history(reopened)["scw"][-1] == (runs[3], "content-md5")
    finally:
        reopened.close()


def test_the_checksum_in_force_is_the_last_pair_at_or_before_the_run() -> None:
    pairs = [(3, "content-md5"), (7, "sha256")]
    assert checksum_at(pairs, 2) is None  # before the record began: not known
    assert [checksum_at(pairs, run) for run in (3, 6, 7, 9)] == [
        "content-md5", "content-md5", "sha256", "sha256",
    ]  # fmt: skip


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal(tmp_path / "j.db", "cfg")
    yield opened
    opened.close()


def _first_run(journal: Journal, mode: str, token: str) -> int:
    """A run that recorded `mode` for endpoint scw and opened the upload `token`."""
    run = journal.start_run("migrate")
    record_run(journal, run, {"scw": mode})
    _opened(journal, run, token)
    return run


def test_an_upload_opened_under_the_other_checksum_is_stale(journal: Journal) -> None:
    _first_run(journal, "content-md5", "md5-upload")
    second = journal.start_run("migrate")
    guard = _guard(journal, second, {"scw": "sha256"})
    _opened(journal, second, "sha-upload")
    assert guard.opened_with("scw", "md5-upload") == "content-md5"
    assert guard.stale("scw", "md5-upload") == "content-md5"
    assert guard.stale("scw", "sha-upload") is None  # opened by this very run
    assert guard.stale("scw", "never-journaled") is None  # not known: resumed as before
    assert guard.stale("azure", "md5-upload") is None  # no part checksum there


def test_an_upload_older_than_the_record_is_resumed_as_before(journal: Journal) -> None:
    old = journal.start_run("migrate")  # a version that kept no record opened it
    _opened(journal, old, "legacy-upload")
    guard = _guard(journal, journal.start_run("migrate"), {"scw": "sha256"})
    assert guard.opened_with("scw", "legacy-upload") is None
    assert guard.stale("scw", "legacy-upload") is None


def test_the_same_checksum_again_keeps_every_upload(journal: Journal) -> None:
    _first_run(journal, "sha256", "u1")
    guard = _guard(journal, journal.start_run("migrate"), {"scw": "sha256"})
    assert guard.stale("scw", "u1") is None

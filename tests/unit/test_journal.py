"""The journal: configuration binding, wrapped file keys, attempts that survive a reopen."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from pathlib import Path

import pytest

from bascule.errors import JournalError
from bascule.migration.journal import (
    CommittedRow,
    Facts,
    Journal,
    KeyWrapper,
    PartRow,
    RunRow,
    StepRow,
    VerificationRow,
    VerifyTally,
    key_path_for,
)


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


def test_runs_come_back_as_frozen_typed_rows_with_their_runbook_facts(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", "c")
    run_id = journal.start_run(
        "rehearse", {"runbook": "cutover", "runbook_sha256": "ab" * 32, "datasets": ["a", "b"]}
    )
    journal.end_run(run_id, "completed", 1000, 4, 2.5)
    journal.start_run("migrate", {"dataset": "a", "objects": 3})
    rehearsals = journal.runs("rehearse")
    journal.close()
    assert len(rehearsals) == 1
    run = rehearsals[0]
    assert isinstance(run, RunRow)
    assert (run.id, run.command, run.status, run.bytes, run.objects, run.seconds) == (
        run_id, "rehearse", "completed", 1000, 4, 2.5,
    )  # fmt: skip
    assert run.ended is not None and run.ended >= run.started
    assert (run.runbook, run.runbook_sha256, run.datasets) == ("cutover", "ab" * 32, ("a", "b"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "failed"  # type: ignore[misc]


def test_steps_and_verifications_come_back_as_typed_rows(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", "c")
    facts = Facts(journal)
    tally = {"objects": 3, "verified": 2, "findings": 1, "bytes": 70, "level": "full",
             "rows": True, "run_id": 9}  # fmt: skip
    sid = facts.start_step(5, "cutover", "rehearse", "copy", "check", "verify")
    facts.end_step(sid, "failed", {"seconds": 1.25, "message": "1 finding(s)", "findings": 1,
                                   "datasets": {"a": tally}, "datasets_failed": ["a"]})  # fmt: skip
    copy_id = facts.start_step(5, "cutover", "rehearse", "copy", "bulk", "copy")
    facts.end_step(copy_id, "passed", {"bytes": 4096, "objects": 7, "seconds": 2.0})
    facts.record_verification(9, "a", "in/x", "out/x", "full", "verified", {"rows": 12})
    steps = facts.steps(5)
    verifications = facts.verifications(9)
    journal.close()
    verify, copy = steps
    assert isinstance(verify, StepRow) and verify.id == sid and verify.kind == "verify"
    assert (verify.phase, verify.step, verify.outcome) == ("copy", "check", "failed")
    assert verify.seconds == 1.25 and verify.message == "1 finding(s)" and verify.findings == 1
    assert verify.datasets_failed == ("a",)
    assert verify.verified == {"a": VerifyTally(3, 2, 1, 70, "full", True)}
    assert (copy.copied_bytes, copy.copied_objects, copy.verified) == (4096, 7, {})
    (row,) = verifications
    assert isinstance(row, VerificationRow)
    assert (row.run_id, row.dataset, row.source_key, row.target_key) == (9, "a", "in/x", "out/x")
    assert (row.level, row.verdict, row.detail) == ("full", "verified", {"rows": 12})
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.verdict = "size-mismatch"  # type: ignore[misc]


def test_freeze_snapshot_reads_back_as_etag_and_size_per_key(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", "c")
    facts = Facts(journal)
    sid = facts.start_step(1, "rb", "execute", "cutover", "freeze", "freeze")
    facts.end_step(sid, "passed", {"snapshot": {"a": {"in/x": ["e1", 10]}}, "objects": 1})
    (row,) = facts.steps(1)
    journal.close()
    assert row.snapshot == {"a": {"in/x": ("e1", 10)}}


def test_rows_written_with_bare_details_still_read(tmp_path: Path) -> None:
    """A journal whose rows carry only the schema defaults (a step still running, a run
    without runbook facts) opens and reads with neutral values."""
    path = tmp_path / "j.db"
    Journal(path, "c").close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO runs (command, started, status) VALUES ('execute', 1.0, 'running')")
        db.execute(
            "INSERT INTO steps (run_id, runbook, mode, phase, step, kind, started, outcome) "
            "VALUES (1, 'rb', 'execute', 'p', 's', 'copy', 2.0, 'running')"
        )
        db.execute(
            "INSERT INTO verifications (run_id, ts, dataset, level, verdict, detail) "
            "VALUES (1, 3.0, 'a', 'quick', 'verified', ?)",
            (json.dumps({}),),
        )
    journal = Journal(path, "c")
    (run,) = journal.runs()
    (step,) = Facts(journal).steps()
    (check,) = Facts(journal).verifications()
    journal.close()
    assert (run.ended, run.seconds, run.runbook, run.runbook_sha256, run.datasets) == (
        None, None, "", None, (),
    )  # fmt: skip
    assert (step.ended, step.seconds, step.copied_bytes, step.message, step.findings) == (
        None, 0.0, 0, "", 0,
    )  # fmt: skip
    assert (step.datasets_failed, step.verified, step.snapshot) == ((), {}, {})
    assert (check.source_key, check.target_key, check.detail) == (None, None, {})


def _committed(journal: Journal, key: str) -> None:
    journal.record_committed(
        [CommittedRow("ds", key, key, "e", 1, 1, 0, 8 << 20, 1, 1, "p" * 64 + "-1",
                      "c" * 64 + "-1", "etag", 1)]
    )  # fmt: skip


def _seen_by_another_reader(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM objects WHERE state='committed'").fetchone()[0])
    finally:
        db.close()


def test_commit_rows_are_group_committed_and_flushed_by_any_other_write(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, "c")
    _committed(journal, "a")
    _committed(journal, "b")
    assert journal.in_batch
    assert _seen_by_another_reader(path) == 0  # one open transaction, not yet durable
    assert len(journal.objects("ds", "committed")) == 2  # the writer reads its own rows
    journal.event(None, "something")  # any other write commits the batch first
    assert not journal.in_batch and _seen_by_another_reader(path) == 2
    _committed(journal, "c")
    journal.close()
    assert _seen_by_another_reader(path) == 3


def test_group_commit_is_bounded_by_rows(tmp_path: Path) -> None:
    from bascule.migration.journal import GROUP_ROWS

    path = tmp_path / "j.db"
    journal = Journal(path, "c")
    for i in range(GROUP_ROWS + 3):
        _committed(journal, f"k{i}")
    assert _seen_by_another_reader(path) == GROUP_ROWS
    journal.flush()
    assert _seen_by_another_reader(path) == GROUP_ROWS + 3
    journal.close()


def test_a_batch_of_commit_rows_is_one_write_that_replaces_earlier_generations(
    tmp_path: Path,
) -> None:
    from bascule.migration.journal import GROUP_ROWS

    path = tmp_path / "j.db"
    journal = Journal(path, "c")
    oid = _begin(journal, key="dst/a")  # an earlier generation, with a part
    journal.record_part(oid, PartRow(1, 8, 9, "p" * 64, "c" * 64, "etag1"))
    rows = [CommittedRow("ds", f"src/{k}", f"dst/{k}", "e2", 3, 3, 0, 8 << 20, 1, gen,
                         f"p{k}", f"c{k}", f"t{k}", 7)
            for k, gen in (("a", 2), ("b", 1))]  # fmt: skip
    journal.record_committed(rows)
    assert journal.in_batch and _seen_by_another_reader(path) == 0
    a, b = journal.get_object("ds", "dst/a"), journal.get_object("ds", "dst/b")
    assert a is not None and b is not None
    assert (a.state, a.generation, a.source_etag, a.plain_sha256) == ("committed", 2, "e2", "pa")
    assert (a.header, a.nonce, a.wrapped_key, a.resume_token) == (None, None, None, None)
    assert journal.parts(oid) == []  # the earlier generation's parts went with it
    assert (b.state, b.target_etag, b.cipher_sha256) == ("committed", "tb", "cb")
    many = [CommittedRow("ds", f"s{i}", f"k{i}", "e", 1, 1, 0, 1, 1, 1, "p", "c", "t", 7)
            for i in range(GROUP_ROWS)]  # fmt: skip
    journal.record_committed(many)  # past the row bound: flushed, the earlier rows with it
    assert not journal.in_batch and _seen_by_another_reader(path) == GROUP_ROWS + 2
    journal.close()


def test_commit_rows_lost_to_a_kill_leave_the_objects_to_copy_again(tmp_path: Path) -> None:
    """A SIGKILL before the flush loses the batch: the plan's view of the journal then has
    no committed row for those objects, so they are planned again, never taken as done."""
    import subprocess
    import sys

    path = tmp_path / "j.db"
    Journal(path, "c").close()
    script = (
        "import os, sys; from pathlib import Path\n"
        "from bascule.migration.journal import Journal\n"
        "from tests.unit.test_journal import _committed\n"
        "j = Journal(Path(sys.argv[1]), 'c')\n"
        "_committed(j, 'lost')\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert proc.returncode == -9
    journal = Journal(path, "c")
    try:
        view = {row.target_key: row for row in journal.plan_rows("ds")}
        assert journal.get_object("ds", "lost") is None
    finally:
        journal.close()
    from bascule.connectors.base import Capabilities, ObjectInfo
    from bascule.migration.plan import DatasetSpec, plan_dataset

    on_target = [ObjectInfo(key="lost", size=1, etag="t")]  # written, its commit row lost
    plan = plan_dataset(DatasetSpec("ds", "", "", False, 8 << 20, 1),
                        [ObjectInfo(key="lost", size=1, etag="e")], on_target, view,
                        Capabilities())  # fmt: skip
    assert [(o.target_key, o.action) for o in plan.objects] == [("lost", "new")]


def test_verdicts_are_group_committed_and_durable_once_the_run_ends(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path, "c")
    run = journal.start_run("verify")
    facts = Facts(journal)
    for i in range(3):
        facts.record_verification(run, "ds", f"s{i}", f"t{i}", "full", "ok", {"n": i})
    assert journal.in_batch and len(facts.verifications(run)) == 3
    journal.end_run(run, "completed", 0, 3, 1.0)
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT COUNT(*) FROM verifications").fetchone()[0] == 3
    finally:
        db.close()
    journal.close()

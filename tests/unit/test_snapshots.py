"""Freeze snapshots in their own table, and the drift gate as a merge of sorted streams:
round trip in key order across batches, each drift named and counted, old journals (the
snapshot as JSON in the freeze step's detail, no snapshots table) still read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from bascule.config import Config, load_config
from bascule.connectors.base import ObjectInfo
from bascule.endpoints import clear_cache
from bascule.errors import PlanError
from bascule.migration import snapshots
from bascule.migration.journal import Facts, Journal, StepRow
from bascule.migration.merge import merge_sorted
from bascule.migration.service import open_journal
from bascule.migration.snapshots import Entry, Snapshots, frozen_datasets
from bascule.runbook import drift as drift_mod
from bascule.runbook.drift import NAMED, compare, drift, take_snapshot


def _config(tmp: Path) -> Config:
    clear_cache()
    src = tmp / "src" / "c" / "in"
    src.mkdir(parents=True)
    for name in ("a.csv", "b.csv", "c.csv", "d.csv"):
        (src / name).write_bytes(name.encode() * 10)
    data = {
        "project": "snap", "journal": "state/journal.db",
        "endpoints": {"s": {"kind": "local", "path": str(tmp / "src")},
                      "t": {"kind": "local", "path": str(tmp / "dst")}},
        "datasets": [{"name": "ds", "encrypt": False,
                      "source": {"endpoint": "s", "container": "c", "prefix": "in/"},
                      "target": {"endpoint": "t", "bucket": "b", "prefix": "out/"}}],
    }  # fmt: skip
    (tmp / "bascule.yaml").write_text(yaml.safe_dump(data))
    return load_config(tmp / "bascule.yaml")


def _freeze_row(journal: Journal, run: int, detail: dict[str, object]) -> StepRow:
    facts = Facts(journal)
    step = facts.start_step(run, "rb", "execute", "p", "freeze", "freeze")
    facts.end_step(step, "passed", detail)
    return next(r for r in facts.steps(run) if r.id == step)


def test_a_snapshot_round_trips_in_key_order_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "BATCH", 3)
    journal = Journal(tmp_path / "j.db", "cfg")
    entries = [Entry(f"k{i:02d}", f"e{i}", i) for i in (5, 1, 9, 3, 7, 2, 8)]
    assert Snapshots(journal).write(1, "freeze", "ds", entries) == 7
    Snapshots(journal).write(1, "freeze", "other", [Entry("zz", "e", 1)])
    assert list(Snapshots(journal).stored(1, "freeze", "ds")) == sorted(entries)
    # a re-run of the step replaces its snapshot, and only its own
    assert Snapshots(journal).write(1, "freeze", "ds", [Entry("k01", "new", 1)]) == 1
    assert list(Snapshots(journal).stored(1, "freeze", "ds")) == [Entry("k01", "new", 1)]
    assert list(Snapshots(journal).stored(1, "freeze", "other")) == [Entry("zz", "e", 1)]
    journal.close()


def test_compare_names_new_changed_deleted_and_counts_beyond_the_named() -> None:
    before = [Entry("a", "1", 1), Entry("b", "1", 1), Entry("c", "1", 1), Entry("d", "1", 1)]
    now = [ObjectInfo("a", 1, "1"), ObjectInfo("b", 2, "1"), ObjectInfo("bb", 1, "x"),
           ObjectInfo("d", 1, "2")]  # fmt: skip
    found = compare("ds", before, now)
    assert found.counts == {"new": 1, "changed": 2, "deleted": 1}
    assert found.named == ["changed b", "new bb", "deleted c", "changed d"]
    assert found.objects == 4
    many = compare("ds", [], (ObjectInfo(f"k{i:04d}", 1, "e") for i in range(NAMED + 5)))
    assert many.counts["new"] == NAMED + 5
    assert len(many.named) == NAMED
    assert many.summary() == f"{NAMED + 5} new, 0 changed, 0 deleted"


def test_the_merge_refuses_a_listing_out_of_key_order() -> None:
    with pytest.raises(PlanError, match="the source listing is not in key order"):
        list(merge_sorted(["a"], ["b", "a"], str, str, what=("x", "the source listing")))
    with pytest.raises(PlanError, match="not in key order"):
        list(merge_sorted(["a", "a"], [], str, str))


def test_freeze_then_gate_on_local_folders_streams_through_the_table(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    journal = open_journal(cfg, create=True)
    assert journal is not None
    run = journal.start_run("execute", {})
    assert take_snapshot(journal, run, "freeze", cfg, cfg.dataset("ds")) == 4
    row = _freeze_row(journal, run, {"datasets": ["ds"], "objects": 4})
    assert "snapshot" not in row.detail  # the inventory is in the table, not the step row
    src = tmp_path / "src" / "c" / "in"
    (src / "b.csv").write_bytes(b"changed, longer than before")
    (src / "c.csv").unlink()
    (src / "e.csv").write_bytes(b"new")
    (found,) = drift(journal, cfg, row)
    assert found.named == ["changed in/b.csv", "deleted in/c.csv", "new in/e.csv"]
    journal.close()


def test_an_old_freeze_step_with_its_snapshot_as_json_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path)
    journal = open_journal(cfg, create=True)
    assert journal is not None
    run = journal.start_run("execute", {})
    listed = {o.key: [o.etag, o.size] for o in drift_mod._listing(cfg, cfg.dataset("ds"))}
    del listed["in/a.csv"]
    listed["in/zz.csv"] = ["gone", 1]
    row = _freeze_row(journal, run, {"snapshot": {"ds": listed}, "objects": 4})
    assert frozen_datasets(row) == ("ds",)
    assert [e.key for e in Snapshots(journal).read(row, "ds")] == sorted(listed)
    (found,) = drift(journal, cfg, row)
    assert found.named == ["new in/a.csv", "deleted in/zz.csv"]
    journal.close()


def test_a_journal_without_the_new_table_and_indexes_opens_and_gains_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.db"
    Journal(path, "cfg").close()
    with sqlite3.connect(path) as db:  # what a journal of the previous release holds
        db.execute("DROP TABLE snapshots")
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='index' "
                                  "AND name NOT LIKE 'sqlite_%'").fetchall():  # fmt: skip
            db.execute(f"DROP INDEX {name}")
    reader = Journal(path, "cfg", create=False)
    assert reader.committed_totals() == {}
    reader.close()
    Journal(path, "cfg").close()
    with sqlite3.connect(path) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
    assert {"snapshots", "objects_state", "verifications_run", "steps_run"} <= names

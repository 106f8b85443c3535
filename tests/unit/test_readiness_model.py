"""Readiness computed straight from a journal: per-dataset verdicts with their reasons, the
projection from measured throughput, and the days left before the deadline on an injected
clock. The facts are written through the journal's own API, as the runbook and verify do."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.config import Config, load_config
from bascule.migration.journal import CommittedRow, Facts, Journal
from bascule.migration.service import open_journal
from bascule.readiness.model import CONDITIONAL, NOT_READY, READY, UNKNOWN, compute_readiness

DAY_S = 86400.0
MakeConfig = Callable[..., Config]
# (phase, step, kind, outcome, detail) of one step row
StepSpec = tuple[str, str, str, str, dict[str, Any]]


@pytest.fixture()
def make_config(tmp_path: Path) -> MakeConfig:
    """A config with datasets `a` and `b` on local folders, plus `extra` top-level keys."""

    def make(**extra: Any) -> Config:
        data: dict[str, Any] = {
            "project": "readiness",
            "journal": "state/journal.db",
            "endpoints": {"src": {"kind": "local", "path": str(tmp_path / "src")},
                          "dst": {"kind": "local", "path": str(tmp_path / "dst")}},
            "datasets": [
                {"name": n, "encrypt": False,
                 "source": {"endpoint": "src", "container": "c", "prefix": f"{n}/"},
                 "target": {"endpoint": "dst", "bucket": "b", "prefix": f"{n}/"}}
                for n in ("a", "b")
            ],
            **extra,
        }  # fmt: skip
        path = tmp_path / "bascule.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_config(path)

    return make


@pytest.fixture()
def journal_of(make_config: MakeConfig) -> Iterator[Callable[[Config], Journal]]:
    opened: list[Journal] = []

    def open_(cfg: Config) -> Journal:
        journal = open_journal(cfg, create=True)
        assert journal is not None
        opened.append(journal)
        return journal

    yield open_
    for journal in opened:
        journal.close()


def _tally(verified: int, *, findings: int = 0, rows: bool = True, level: str = "full") -> Any:
    return {"objects": verified + findings, "verified": verified, "findings": findings,
            "bytes": 100 * verified, "level": level, "rows": rows}  # fmt: skip


def _rehearse(
    journal: Journal, datasets: list[str], steps: list[StepSpec], status: str = "completed"
) -> int:
    """One rehearsal run with these step rows; its id."""
    run = journal.start_run("rehearse", {"runbook": "cutover", "runbook_sha256": "0" * 64,
                                         "datasets": datasets})  # fmt: skip
    facts = Facts(journal)
    for phase, name, kind, outcome, detail in steps:
        step_id = facts.start_step(run, "cutover", "rehearse", phase, name, kind)
        facts.end_step(step_id, outcome, detail)
    if status != "running":
        journal.end_run(run, status, 0, 0, 12.0)
    return run


def _verify_step(per: dict[str, Any], outcome: str = "passed", **detail: Any) -> StepSpec:
    findings = sum(t["findings"] for t in per.values())
    return ("cutover", "verify", "verify", outcome,
            {"datasets": per, "findings": findings, "seconds": 5.0, **detail})  # fmt: skip


COPY: StepSpec = ("cutover", "copy", "copy", "passed",
                  {"bytes": 1_000_000, "objects": 10, "seconds": 10.0})  # fmt: skip
CUTOVER: list[StepSpec] = [("cutover", k, k, "passed", {"seconds": 1.0})
                           for k in ("freeze", "gate", "switch", "smoke")]  # fmt: skip


def _by_name(cfg: Config, now: float | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {d.name: (d.status, d.reasons) for d in compute_readiness(cfg, now).datasets}


def test_without_a_journal_every_dataset_is_unknown_and_days_left_use_the_given_clock(
    make_config: MakeConfig,
) -> None:
    cfg = make_config(deadline="2026-07-01")
    now = datetime(2026, 6, 1, 23, 59, tzinfo=UTC).timestamp()
    readiness = compute_readiness(cfg, now)
    assert readiness.days_left == 30 and readiness.deadline == "2026-07-01"
    assert readiness.generated_at == "2026-06-01T23:59:00+00:00"
    assert readiness.overall == UNKNOWN
    assert {(d.name, d.status, d.reasons) for d in readiness.datasets} == {
        ("a", UNKNOWN, ("never rehearsed",)), ("b", UNKNOWN, ("never rehearsed",)),
    }  # fmt: skip
    assert "no throughput measured yet: rehearse a runbook with a copy step" in readiness.blockers
    assert not cfg.journal.exists()  # reading readiness creates nothing
    assert compute_readiness(make_config(), now).days_left is None


def test_a_recent_full_rehearsal_with_row_counts_is_ready(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    cfg = make_config()
    journal = journal_of(cfg)
    run = _rehearse(journal, ["a", "b"], [COPY, _verify_step({"a": _tally(4), "b": _tally(2)})])
    readiness = compute_readiness(cfg, time.time() + 60)
    day = datetime.fromtimestamp(journal.runs("rehearse")[0].started, UTC).date().isoformat()
    assert readiness.overall == READY
    a, b = readiness.datasets
    assert (a.status, a.reasons) == (
        READY, (f"rehearsal r{run} passed on {day}, full verification with row counts",),
    )  # fmt: skip
    assert (a.rehearsal_objects, a.rehearsal_bytes, b.rehearsal_objects) == (4, 400, 2)
    (point,) = readiness.rehearsals
    assert (point.run_id, point.status, point.bytes, point.rate_bps) == (
        run, "completed", 1_000_000, 100_000.0,
    )  # fmt: skip
    assert point.failed_step is None and point.runbook == "cutover"


def test_a_stale_rehearsal_or_one_without_row_counts_is_conditionally_ready(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    cfg = make_config(switchover={"rehearsal_valid_days": 3})
    journal = journal_of(cfg)
    run = _rehearse(journal, ["a", "b"],
                    [COPY, _verify_step({"a": _tally(4), "b": _tally(2, rows=False)})])  # fmt: skip
    fresh = _by_name(cfg, time.time() + 60)
    assert fresh["a"][0] == READY
    assert fresh["b"] == (
        CONDITIONAL, (f"rehearsal r{run} verified without a full re-read with row counts",),
    )  # fmt: skip
    stale = _by_name(cfg, time.time() + 5 * DAY_S)
    assert stale["a"] == (
        CONDITIONAL, (f"last passing rehearsal r{run} is 5 days old (valid 3)",),
    )  # fmt: skip
    assert compute_readiness(cfg, time.time() + 5 * DAY_S).overall == CONDITIONAL


def test_the_latest_finished_rehearsal_covering_a_dataset_decides(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    cfg = make_config()
    journal = journal_of(cfg)
    _rehearse(journal, ["a", "b"], [COPY, _verify_step({"a": _tally(4), "b": _tally(2)})])
    only_a = _rehearse(journal, ["a"], [COPY, _verify_step({"a": _tally(4, rows=False)})])
    _rehearse(journal, ["a", "b"], [COPY], status="running")  # still running: not counted
    verdicts = _by_name(cfg, time.time() + 60)
    assert verdicts["a"] == (
        CONDITIONAL, (f"rehearsal r{only_a} verified without a full re-read with row counts",),
    )  # fmt: skip
    assert verdicts["b"][0] == READY


def test_a_failed_rehearsal_is_not_ready_for_the_datasets_it_failed_on(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    cfg = make_config()
    journal = journal_of(cfg)
    verify = _verify_step({"a": _tally(3, findings=1), "b": _tally(2)}, outcome="failed",
                          message="1 finding(s); first: a/x differs",
                          datasets_failed=["a"])  # fmt: skip
    run = _rehearse(journal, ["a", "b"], [COPY, verify], status="failed")
    readiness = compute_readiness(cfg, time.time() + 60)
    where = "cutover / verify: 1 finding(s); first: a/x differs"
    a, b = readiness.datasets
    assert (a.status, a.reasons) == (NOT_READY, (f"rehearsal r{run} failed at {where}",))
    assert a.rehearsal_findings == 1
    assert (b.status, b.reasons) == (
        CONDITIONAL, (f"rehearsal r{run} failed on other datasets at {where}",),
    )  # fmt: skip
    assert readiness.overall == NOT_READY
    assert readiness.rehearsals[0].failed_step == "cutover / verify"
    assert f"a: rehearsal r{run} failed at {where}" in readiness.blockers


def test_an_interrupted_rehearsal_without_a_failed_step_is_not_ready(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    cfg = make_config()
    journal = journal_of(cfg)
    run = _rehearse(journal, ["a", "b"], [COPY], status="interrupted")
    assert _by_name(cfg, time.time() + 60)["a"] == (
        NOT_READY, (f"rehearsal r{run} ended interrupted",),
    )  # fmt: skip


def test_findings_in_the_latest_production_verify_make_a_dataset_not_ready(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    cfg = make_config()
    journal = journal_of(cfg)
    _rehearse(journal, ["a", "b"], [COPY, _verify_step({"a": _tally(4), "b": _tally(2)})])
    facts = Facts(journal)
    older = journal.start_run("verify", {"datasets": ["a", "b"]})
    facts.record_verification(older, "b", "b/x", "b/x", "full", "size-mismatch", {})
    newer = journal.start_run("verify", {"datasets": ["a"]})
    facts.record_verification(newer, "a", "a/x", "a/x", "full", "verified", {})
    facts.record_verification(newer, "a", "a/y", "a/y", "full", "content-mismatch", {})
    later = journal.start_run("verify", {"datasets": ["b"]})
    facts.record_verification(later, "b", "b/x", "b/x", "full", "verified", {})
    for run, status in ((older, "failed"), (newer, "failed"), (later, "completed")):
        journal.end_run(run, status, 0, 0, 1.0)
    cut = journal.start_run("verify", {"datasets": ["a", "b"]})  # killed: left running
    facts.record_verification(cut, "b", "b/x", "b/x", "full", "content-mismatch", {})
    journal.flush()  # verdicts are group-committed: durable once the verify run ends
    readiness = compute_readiness(cfg, time.time() + 60)
    a, b = readiness.datasets
    assert a.status == NOT_READY and a.objects_verified == 1
    assert "1 verification finding(s) on the production copy" in a.reasons
    assert (b.status, b.objects_verified) == (READY, 1)  # its latest finished verify is clean


def test_projection_scales_the_measured_rate_against_the_deadline_and_freeze_window(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    volume = 100 * 8_640_000_000  # 100 days at the measured 100 kB/s on one worker
    cfg = make_config(deadline="2026-07-01", switchover={
        "production_volume": volume, "workers": 1, "freeze_window": "2h"})  # fmt: skip
    journal = journal_of(cfg)
    steps = [COPY, _verify_step({"a": _tally(4), "b": _tally(2)}), *CUTOVER]
    _rehearse(journal, ["a", "b"], steps)
    now = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    readiness = compute_readiness(cfg, now)
    proj = readiness.projection
    assert proj.measured_rate_bps == 100_000.0
    assert proj.full_copy_s == pytest.approx(100 * DAY_S)
    # the final delta (1% of the volume) at the measured rate, times 1 + verify/copy (5/10),
    # plus the cutover steps' measured 4 s
    assert proj.final_delta_bytes == volume // 100
    assert proj.freeze_window_needed_s == pytest.approx(volume / 100 / 100_000 * 1.5 + 4)
    notes = (
        "full copy projected at 100.0 days, only 30 days left",
        "freeze window needed 36.0 h exceeds the 2.0 h target",
    )
    assert readiness.datasets[0].status == NOT_READY
    assert all(n in readiness.datasets[0].reasons for n in notes)
    assert readiness.overall == NOT_READY
    assert [(p.phase, p.seconds) for p in readiness.last_phases] == [("cutover", 19.0)]


def _row_scan(journal: Journal) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """Copied and verified per dataset the way readiness used to compute them: every row read
    into Python (the reference the SQL aggregates must equal)."""
    copied: dict[str, tuple[int, int]] = {}
    for row in journal.objects(state="committed"):
        n, b = copied.get(row.dataset, (0, 0))
        copied[row.dataset] = (n + 1, b + row.source_size)
    verified: dict[str, tuple[int, int]] = {}
    for run in reversed(journal.runs("verify")):
        rows = Facts(journal).verifications(run.id)
        for name in {r.dataset for r in rows} - set(verified):
            mine = [r for r in rows if r.dataset == name]
            ok = sum(r.verdict == "verified" for r in mine)
            verified[name] = (ok, len(mine) - ok)
    return copied, verified


def test_readiness_aggregates_equal_a_scan_of_every_row(
    make_config: MakeConfig, journal_of: Callable[[Config], Journal]
) -> None:
    cfg = make_config()
    journal = journal_of(cfg)
    for i in range(7):
        values = {"dataset": "ab"[i % 2], "source_key": f"k{i}", "target_key": f"t{i}",
                  "source_etag": "e", "source_size": 10 * i + 1, "target_size": 10 * i + 1,
                  "encrypt": 0, "part_size": 1 << 20, "parts": 1}  # fmt: skip
        if i == 6:  # still in flight: not counted as copied
            journal.begin_object(values)
        else:
            size = 10 * i + 1
            row = CommittedRow("ab"[i % 2], f"k{i}", f"t{i}", "e", size, size, 0, 1 << 20, 1, 1,
                               "p", "c", "t", 1)  # fmt: skip
            journal.record_committed([row])
    facts = Facts(journal)
    older = journal.start_run("verify", {"datasets": ["a", "b"]})
    for key, verdict in (("a/1", "verified"), ("b/1", "stale"), ("b/2", "verified")):
        facts.record_verification(older, key[0], key, key, "quick", verdict, {})
    newer = journal.start_run("verify", {"datasets": ["a"]})
    for key, verdict in (("a/1", "verified"), ("a/2", "missing"), ("a/3", "verified")):
        facts.record_verification(newer, "a", key, key, "quick", verdict, {})
    for run in (older, newer):
        journal.end_run(run, "failed", 0, 0, 1.0)  # verify runs end (with findings here)
    copied, verified = _row_scan(journal)
    assert copied == {"a": (3, 63), "b": (3, 93)} and verified == {"a": (2, 1), "b": (1, 1)}
    got = {d.name: d for d in compute_readiness(cfg).datasets}
    for name in ("a", "b"):
        assert (got[name].objects_copied, got[name].bytes_copied) == copied[name]
        assert got[name].objects_verified == verified[name][0]
    assert journal.committed_totals() == copied
    assert {n: facts.verdict_totals(newer).get(n) for n in "a"} == {"a": verified["a"]}

"""Readiness: what a project manager asks, computed from the journal alone (no network).

Per dataset one of the statuses managers know from Azure Migrate, with the reasons:

- **Ready**: the last rehearsal that covered it passed recently, with full verification;
- **Conditionally ready**: it passed, but something needs attention (old rehearsal, no row
  counts, freeze window too long for the business);
- **Not ready**: the last rehearsal failed on it, the production copy has verification
  findings, or the full copy cannot finish before the deadline;
- **Unknown**: never rehearsed.

Projection: the full-copy duration is the production volume divided by the measured
throughput (the last rehearsal's copy steps, else the last `migrate`) times the worker count
(linear scaling is assumed: each machine gets its own network path). The freeze window is the
final delta's copy, scaled by the verify/copy ratio the rehearsal measured, plus the measured
duration of the cutover steps (freeze, gate, switch, smoke).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from bascule.config import (
    AzureBlobEndpoint,
    Config,
    Endpoint,
    LocalEndpoint,
    S3Endpoint,
)
from bascule.migration.journal import Facts, Journal, RunRow, StepRow
from bascule.migration.service import open_journal

READY = "Ready"
CONDITIONAL = "Conditionally ready"
NOT_READY = "Not ready"
UNKNOWN = "Unknown"
_RANK = {READY: 0, UNKNOWN: 1, CONDITIONAL: 2, NOT_READY: 3}
_CUTOVER_KINDS = ("freeze", "gate", "switch", "smoke")
DAY_S = 86400.0


@dataclass(frozen=True)
class DatasetReadiness:
    name: str
    status: str
    reasons: tuple[str, ...]
    objects_copied: int = 0  # production journal: committed objects
    bytes_copied: int = 0
    objects_verified: int = 0  # production: verified in the latest verify of the dataset
    rehearsal_objects: int = 0  # last rehearsal covering it: objects verified there
    rehearsal_bytes: int = 0
    rehearsal_findings: int = 0


@dataclass(frozen=True)
class RehearsalPoint:
    run_id: int
    started: float
    status: str
    bytes: int
    copy_seconds: float
    seconds: float
    rate_bps: float | None
    failed_step: str | None
    runbook: str
    rehearsal_id: str = ""  # unique across journals (older journals: r<run id>)


@dataclass(frozen=True)
class PhaseDuration:
    phase: str
    seconds: float


@dataclass(frozen=True)
class Projection:
    production_bytes: int | None
    measured_rate_bps: float | None
    workers: int
    full_copy_s: float | None
    final_delta_bytes: int | None
    freeze_window_needed_s: float | None
    freeze_window_target_s: float


@dataclass(frozen=True)
class Readiness:
    project: str
    generated_at: str
    deadline: str | None
    days_left: int | None
    overall: str
    datasets: tuple[DatasetReadiness, ...]
    rehearsals: tuple[RehearsalPoint, ...]
    last_phases: tuple[PhaseDuration, ...]
    projection: Projection
    blockers: tuple[str, ...] = field(default=())
    source: str = ""  # where the data comes from, as the config names it
    target: str = ""  # where it goes, e.g. "Scaleway fr-par (scaleway-fr-par)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Facts:
    """What the journal holds, gathered once."""

    rehearsals: list[RunRow]
    steps: dict[int, list[StepRow]]
    copied: dict[str, tuple[int, int]]
    verified: dict[str, tuple[int, int]]  # dataset -> (verified, findings) of its latest verify
    migrate_rate: float | None


def _latest_verdicts(journal: Journal, names: set[str]) -> dict[str, tuple[int, int]]:
    """Per dataset of `names`, (verified, findings) of the latest verify run that recorded
    it and ran to its end: aggregates per run, newest first, stopping once every dataset is
    found. A run still running, interrupted or killed (left running) holds only the verdicts
    written before it stopped (they are written in batches): it does not count."""
    facts = Facts(journal)
    found: dict[str, tuple[int, int]] = {}
    for run in reversed(journal.runs("verify")):
        missing = names - set(found)
        if not missing:
            break
        if run.status in ("running", "interrupted"):
            continue
        if run.datasets and not missing & set(run.datasets):
            continue  # the run covered none of them: its records cannot be theirs
        for name, counts in facts.verdict_totals(run.id).items():
            found.setdefault(name, counts)
    return found


def _gather(journal: Journal, names: set[str]) -> _Facts:
    facts = Facts(journal)
    rehearsals = journal.runs("rehearse")
    steps = {r.id: facts.steps(r.id) for r in rehearsals}
    return _Facts(rehearsals, steps, journal.committed_totals(), _latest_verdicts(journal, names),
                  journal.last_throughput("migrate"))  # fmt: skip


def _point(run: RunRow, steps: list[StepRow]) -> RehearsalPoint:
    copies = [s for s in steps if s.kind == "copy" and s.outcome == "passed"]
    nbytes = sum(s.copied_bytes for s in copies)
    secs = sum(s.seconds for s in copies)
    failed = [s for s in steps if s.outcome == "failed"]
    return RehearsalPoint(
        run.id, run.started, run.status, nbytes, secs, run.seconds or 0.0,
        nbytes / secs if nbytes and secs > 0 else None,
        f"{failed[0].phase} / {failed[0].step}" if failed else None, run.runbook,
        run.rehearsal_id,
    )  # fmt: skip


def _phases(steps: list[StepRow]) -> tuple[PhaseDuration, ...]:
    order: dict[str, float] = {}
    for s in steps:
        order[s.phase] = order.get(s.phase, 0.0) + s.seconds
    return tuple(PhaseDuration(p, round(v, 3)) for p, v in order.items())


def _projection(cfg: Config, points: list[RehearsalPoint], facts: _Facts) -> Projection:
    sw = cfg.switchover
    volume = sw.production_volume or cfg.production_volume
    rates = [p.rate_bps for p in points if p.rate_bps]
    rate = rates[-1] if rates else facts.migrate_rate
    delta = sw.final_delta or (volume // 100 if volume else None)
    full = needed = None
    if rate and volume:
        full = volume / (rate * sw.workers)
    if rate and delta and points:
        steps = facts.steps[points[-1].run_id]
        copy_s = sum(s.seconds for s in steps if s.kind == "copy")
        verify_s = sum(s.seconds for s in steps if s.kind == "verify")
        ratio = verify_s / copy_s if copy_s > 0 else 1.0
        fixed = sum(s.seconds for s in steps if s.kind in _CUTOVER_KINDS)
        needed = delta / (rate * sw.workers) * (1 + ratio) + fixed
    return Projection(volume, rate, sw.workers, full, delta, needed, sw.freeze_window)


def _days_left(deadline: date | None, now: float) -> int | None:
    if deadline is None:
        return None
    return (deadline - datetime.fromtimestamp(now, UTC).date()).days


def _covers(run: RunRow, name: str) -> bool:
    return name in run.datasets


def _rehearsal_reasons(
    cfg: Config, name: str, facts: _Facts, now: float
) -> tuple[str, list[str], tuple[int, int, int]]:
    """(status, reasons, (objects, bytes, findings) in the last rehearsal covering `name`)."""
    runs = [r for r in facts.rehearsals if _covers(r, name) and r.status != "running"]
    if not runs:
        return UNKNOWN, ["never rehearsed"], (0, 0, 0)
    last = runs[-1]
    steps = facts.steps[last.id]
    verifies = [s.verified[name] for s in steps if name in s.verified]
    # several verify steps re-check the same objects: the widest one counts, not the sum
    counts = (max((v.verified for v in verifies), default=0),
              max((v.bytes for v in verifies), default=0),
              sum(v.findings for v in verifies))  # fmt: skip
    rid = last.rehearsal_id
    if last.status != "completed":
        bad = [s for s in steps if s.outcome == "failed"]
        about = bad[0].datasets_failed if bad else ()
        where = f"{bad[0].phase} / {bad[0].step}: {bad[0].message}" if bad else ""
        if bad and about and name not in about:
            return CONDITIONAL, [f"rehearsal {rid} failed on other datasets at {where}"], counts
        return NOT_READY, [f"rehearsal {rid} failed at {where}" if bad else
                           f"rehearsal {rid} ended {last.status}"], counts  # fmt: skip
    reasons = []
    status = READY
    age_days = (now - (last.ended or last.started)) / DAY_S
    valid = cfg.switchover.rehearsal_valid_days
    if age_days > valid:
        status = CONDITIONAL
        reasons.append(f"last passing rehearsal {rid} is {age_days:.0f} days old (valid {valid})")
    if not verifies:
        status = CONDITIONAL
        reasons.append(f"rehearsal {rid} did not verify this dataset")
    elif not any(v.level == "full" and v.rows for v in verifies):
        status = CONDITIONAL
        reasons.append(f"rehearsal {rid} verified without a full re-read with row counts")
    if status == READY:
        day = datetime.fromtimestamp(last.started, UTC).date().isoformat()
        reasons.append(f"rehearsal {rid} passed on {day}, full verification with row counts")
    return status, reasons, counts


def _worse(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


def _project_notes(proj: Projection, days_left: int | None) -> tuple[str, list[str]]:
    """(worst status the projection imposes, reasons)."""
    status, notes = READY, []
    if proj.full_copy_s is not None and days_left is not None:
        days = proj.full_copy_s / DAY_S
        if days > days_left:
            status = NOT_READY
            notes.append(f"full copy projected at {days:.1f} days, only {days_left} days left")
    if proj.freeze_window_needed_s is not None and (
        proj.freeze_window_needed_s > proj.freeze_window_target_s
    ):
        status = _worse(status, CONDITIONAL)
        notes.append(
            f"freeze window needed {proj.freeze_window_needed_s / 3600:.1f} h exceeds the "
            f"{proj.freeze_window_target_s / 3600:.1f} h target"
        )
    return status, notes


S3_PROVIDERS = {
    "scaleway": "Scaleway",
    "ovhcloud": "OVHcloud",
    "aws": "Amazon S3",
    "other": "S3-compatible storage",
}


def _endpoint_label(name: str, ep: Endpoint) -> str:
    """What an endpoint is, from the config alone (never a URL): "Scaleway fr-par (name)"."""
    if isinstance(ep, S3Endpoint):
        what = " ".join(x for x in (S3_PROVIDERS[ep.provider], ep.region) if x)
    elif isinstance(ep, AzureBlobEndpoint):
        what = "Azure Blob Storage"
    elif isinstance(ep, LocalEndpoint):
        what = "local folder"
    else:
        what = f"rclone remote {ep.remote}"
    return f"{what} ({name})"


def side_label(cfg: Config, side: str) -> str:
    """The datasets' `side` ("source" or "target") endpoints, labelled, in name order."""
    names = sorted({getattr(d, side).endpoint for d in cfg.datasets})
    return ", ".join(_endpoint_label(n, cfg.endpoints[n]) for n in names)


def compute_readiness(cfg: Config, now: float | None = None) -> Readiness:
    """Readiness from the config's journal (an absent journal gives Unknown everywhere).

    Raises JournalError when the journal exists but is foreign or unusable."""
    now = time.time() if now is None else now
    journal = open_journal(cfg, create=False)
    if journal is None:
        facts = _Facts([], {}, {}, {}, None)
    else:
        try:
            facts = _gather(journal, {ds.name for ds in cfg.datasets})
        finally:
            journal.close()
    points = [_point(r, facts.steps[r.id]) for r in facts.rehearsals]
    proj = _projection(cfg, points, facts)
    days_left = _days_left(cfg.deadline, now)
    project_status, notes = _project_notes(proj, days_left)
    datasets = []
    for ds in cfg.datasets:
        status, reasons, counts = _rehearsal_reasons(cfg, ds.name, facts, now)
        n_ok, n_bad = facts.verified.get(ds.name, (0, 0))
        if n_bad:
            status = NOT_READY
            reasons.append(f"{n_bad} verification finding(s) on the production copy")
        if status != UNKNOWN and project_status != READY:
            status = _worse(status, project_status)
            reasons += notes
        copied = facts.copied.get(ds.name, (0, 0))
        datasets.append(DatasetReadiness(ds.name, status, tuple(reasons), copied[0], copied[1],
                                         n_ok, counts[0], counts[1], counts[2]))  # fmt: skip
    overall = READY
    for d in datasets:
        overall = _worse(overall, d.status)
    blockers = _blockers(datasets, notes, proj, cfg)
    last_phases = _phases(facts.steps[points[-1].run_id]) if points else ()
    generated = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    deadline = cfg.deadline.isoformat() if cfg.deadline else None
    return Readiness(cfg.project, generated, deadline, days_left, overall, tuple(datasets),
                     tuple(points), last_phases, proj, tuple(blockers),
                     side_label(cfg, "source"), side_label(cfg, "target"))  # fmt: skip


def _blockers(
    datasets: list[DatasetReadiness], notes: list[str], proj: Projection, cfg: Config
) -> list[str]:
    out: list[str] = []
    for d in datasets:
        if d.status in (NOT_READY, CONDITIONAL, UNKNOWN):
            out += [f"{d.name}: {r}" for r in d.reasons if r not in notes]
    out += notes
    if proj.production_bytes is None:
        out.append("no production volume in the config (switchover.production_volume)")
    if proj.measured_rate_bps is None:
        out.append("no throughput measured yet: rehearse a runbook with a copy step")
    if cfg.deadline is None:
        out.append("no deadline in the config")
    return out

"""What the evidence pack reads from the journal, as typed facts: the one place that does.

Every journal read of the pack goes through this module, so a change in the journal's read
API is absorbed here. Nothing secret is read: an object's age header, nonce and wrapped file
key never leave the journal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bascule.errors import UsageError
from bascule.migration.journal import Facts, Journal, RunRow, StepRow, VerificationRow

RUNBOOK_COMMANDS = ("execute", "rehearse", "rollback")


def iso(ts: float | None) -> str | None:
    """A journal timestamp (epoch seconds) as ISO 8601 UTC, to the second."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunFact:
    """One run of the journal (`command`: execute, rehearse, rollback, migrate, verify)."""

    id: int
    command: str
    status: str
    started: str | None
    ended: str | None
    runbook: str
    runbook_sha256: str
    runbook_path: str
    datasets: tuple[str, ...]
    by: str
    forced: str | None


@dataclass(frozen=True)
class StepFact:
    """One runbook step as the journal recorded it; `detail` is the step's own record."""

    phase: str
    step: str
    kind: str
    mode: str
    started: str | None
    ended: str | None
    outcome: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerificationFact:
    """The latest verification of one object, and the latest one that counted its rows."""

    verdict: str
    level: str
    time: str | None
    run_id: int
    findings: tuple[str, ...] = ()
    row_format: str | None = None
    source_rows: int | None = None
    target_rows: int | None = None
    rows_run_id: int | None = None


@dataclass(frozen=True)
class ObjectFact:
    """One object of the journal: both sides' keys and sizes, the etags and the composites
    recorded at the copy (None for a side not written yet)."""

    dataset: str
    source_key: str
    source_etag: str
    source_size: int
    target_key: str
    target_etag: str | None
    target_size: int
    encrypted: bool
    state: str
    plain_sha256: str | None
    cipher_sha256: str | None


def _run_fact(row: RunRow) -> RunFact:
    detail = row.detail
    return RunFact(
        row.id, row.command, row.status, iso(row.started),
        iso(row.ended), row.runbook, row.runbook_sha256 or "",
        str(detail.get("runbook_path", "")), tuple(detail.get("datasets", ())),
        str(detail.get("by", "")), detail.get("forced"),
    )  # fmt: skip


def pick_run(journal: Journal, run_id: int | None) -> RunFact:
    """Run `run_id`, or the last execute/rehearse run. UsageError when there is none, or when
    the run is not a runbook run."""
    runs = {r.id: r for r in journal.runs()}
    if run_id is None:
        last = [r for r in runs.values() if r.command in ("execute", "rehearse")]
        if not last:
            raise UsageError(
                f"{journal.path}: no execute or rehearse run in the journal; run "
                "`bascule runbook rehearse RUNBOOK` first, or pass --run ID"
            )
        return _run_fact(last[-1])
    if run_id not in runs:
        raise UsageError(f"--run {run_id}: no such run in {journal.path}; see `bascule status`")
    if runs[run_id].command not in RUNBOOK_COMMANDS:
        raise UsageError(
            f"--run {run_id}: a {runs[run_id].command} run, not a runbook run; pass the id "
            "of an execute, rehearse or rollback run"
        )
    return _run_fact(runs[run_id])


def rehearsals_of(journal: Journal, runbook_sha256: str) -> list[RunFact]:
    """Every rehearsal of the runbook with this content, oldest first."""
    runs = [_run_fact(r) for r in journal.runs("rehearse")]
    return [r for r in runs if r.runbook_sha256 == runbook_sha256]


def _step_fact(r: StepRow) -> StepFact:
    return StepFact(
        r.phase, r.step, r.kind, r.mode, iso(r.started), iso(r.ended), r.outcome, dict(r.detail)
    )


def steps_of(journal: Journal, run_id: int) -> list[StepFact]:
    return [_step_fact(r) for r in Facts(journal).steps(run_id)]


def _latest_verifications(journal: Journal) -> dict[tuple[str, str], VerificationFact]:
    """Per (dataset, target key): the latest verification, with the rows of the latest one
    that counted them. Verify runs are read oldest first, so later ones win."""
    facts = Facts(journal)
    out: dict[tuple[str, str], VerificationFact] = {}
    for run in journal.runs("verify"):
        for row in facts.verifications(run.id):
            if not row.target_key:
                continue
            key = (row.dataset, row.target_key)
            out[key] = _verification(row, out.get(key))
    return out


def _verification(row: VerificationRow, before: VerificationFact | None) -> VerificationFact:
    detail = row.detail
    kinds = tuple(str(f.get("kind")) for f in detail.get("findings", ()))
    fact = VerificationFact(row.verdict, row.level, iso(row.ts), row.run_id, kinds)
    if detail.get("rows_checked"):
        return VerificationFact(
            fact.verdict, fact.level, fact.time, fact.run_id, kinds, detail.get("row_format"),
            detail.get("source_rows"), detail.get("target_rows"), fact.run_id,
        )  # fmt: skip
    if before is not None and before.rows_run_id is not None:
        return VerificationFact(
            fact.verdict, fact.level, fact.time, fact.run_id, kinds, before.row_format,
            before.source_rows, before.target_rows, before.rows_run_id,
        )  # fmt: skip
    return fact


def objects_of(
    journal: Journal, datasets: Sequence[str]
) -> Iterator[tuple[ObjectFact, VerificationFact | None]]:
    """Every object of `datasets` in the journal, sorted by dataset then target key, each with
    its latest verification (None when never verified)."""
    checks = _latest_verifications(journal)
    for name in sorted(datasets):
        rows = sorted(journal.objects(name), key=lambda r: r.target_key)
        for r in rows:
            fact = ObjectFact(
                r.dataset, r.source_key, r.source_etag, r.source_size, r.target_key,
                r.target_etag or None, r.target_size, r.encrypt, r.state, r.plain_sha256,
                r.cipher_sha256 if r.encrypt else None,
            )  # fmt: skip
            yield fact, checks.get((r.dataset, r.target_key))

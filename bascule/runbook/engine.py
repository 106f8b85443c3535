"""Run a runbook: `rehearse`, `execute`, `rollback`. Free of printing.

Facts go to the config's (main) journal: one run per invocation (command ``rehearse``,
``execute`` or ``rollback``, detail holding the runbook's name and sha256) and one step row
per step (start, end, outcome, detail with throughput and counts).

- rehearse: the datasets' targets get the prefix ``switchover.rehearsal_prefix`` (with the
  rehearsal id, unique across journals and configs) and their own journal under
  ``<journal dir>/rehearsals/<id>/``; `switch` writes a rehearsal copy of the routing record;
  hooks do not run. After the phases, the rollback section is rehearsed too. At the end,
  unless `keep`, the objects the rehearsal journal committed are deleted (nothing else).
- execute: refuses (UsageError) unless this exact runbook passed a rehearsal within
  ``switchover.rehearsal_valid_days`` or a force reason is given. A run that stopped midway
  (crash, Ctrl-C) is resumed by the next execute of the same runbook: steps that passed are
  not run again. A failure after a passed `switch` runs the rollback section.
- rollback: runs the rollback section against production.
"""

from __future__ import annotations

import getpass
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from bascule.config import Config
from bascule.connectors.base import PartWriterOpener
from bascule.endpoints import EndpointRef, connector
from bascule.errors import BasculeError, ConnectorError, Interrupted, UsageError
from bascule.migration.journal import Facts, Journal, RunRow
from bascule.migration.orphans import abort_orphans
from bascule.migration.service import open_journal, target_ref
from bascule.runbook.context import (
    FAILED,
    PASSED,
    SKIPPED,
    WARNED,
    Context,
    RunOptions,
    StepReport,
    StepResult,
)
from bascule.runbook.routing import RoutingStore, rehearsal_dir
from bascule.runbook.schema import Runbook, Step
from bascule.runbook.steps import run_step

log = structlog.get_logger("bascule.runbook")
DAY_S = 86400.0
RESUMABLE = ("running", "interrupted")


@dataclass
class RunbookOutcome:
    """`status`: completed | failed | rolled_back | rollback_failed."""

    run_id: int
    mode: str
    status: str
    results: list[StepResult] = field(default_factory=list)
    rehearsal_id: str | None = None
    routing_where: str = ""
    cleanup: str = ""
    resumed: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def failed_step(self) -> StepResult | None:
        bad = [r for r in self.results if r.outcome == FAILED]
        return bad[0] if bad else None


def new_rehearsal_id() -> str:
    """An id no other rehearsal has, whatever journal or config shares the bucket: UTC time
    to the second, then 40 random bits (sortable, like a ULID)."""
    return f"r{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(5)}"


def rehearsal_config(cfg: Config, rehearsal_id: str) -> Config:
    """`cfg` with every target under the rehearsal prefix and the rehearsal's own journal."""
    prefix = cfg.switchover.rehearsal_prefix.format(id=rehearsal_id)
    datasets = []
    for ds in cfg.datasets:
        target = ds.target.model_copy(update={"prefix": prefix + ds.target.prefix})
        datasets.append(ds.model_copy(update={"target": target}))
    journal = rehearsal_dir(cfg, rehearsal_id) / "journal.db"
    return cfg.model_copy(update={"datasets": datasets, "journal": journal})


def _main_journal(cfg: Config) -> Journal:
    journal = open_journal(cfg, create=True)
    assert journal is not None
    return journal


def last_passing_rehearsal(journal: Journal, sha256: str, days: float) -> RunRow | None:
    """The latest completed rehearsal of the runbook with this content, if recent enough."""
    horizon = time.time() - days * DAY_S
    runs = [
        r for r in journal.runs("rehearse")
        if r.status == "completed" and r.runbook_sha256 == sha256 and (r.ended or 0) >= horizon
    ]  # fmt: skip
    return runs[-1] if runs else None


def _run_detail(runbook: Runbook, who: str, **extra: Any) -> dict[str, Any]:
    detail = {
        "runbook": runbook.name,
        "runbook_path": str(runbook.path),
        "runbook_sha256": runbook.sha256,
        "datasets": list(runbook.datasets),
        "by": who,
    }
    detail.update(extra)
    return detail


def _step_detail(report: StepReport, seconds: float) -> dict[str, Any]:
    detail = dict(report.detail)
    detail.update(message=report.message, seconds=round(seconds, 3))
    if report.datasets_failed:
        detail["datasets_failed"] = list(report.datasets_failed)
    return detail


def _report(callback: Callable[..., None] | None, *args: Any) -> None:
    """Call a reporting callback; whatever it raises is logged and dropped, so that output
    (a terminal gone, text it cannot render) never decides whether a rollback runs."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception as exc:
        log.warning("runbook.report_failed", error=f"{type(exc).__name__}: {exc}")


def _one(ctx: Context, phase: str, step: Step) -> StepResult:
    facts = Facts(ctx.journal)
    _report(ctx.options.on_start, phase, step)
    step_id = facts.start_step(ctx.run_id, ctx.runbook.name, ctx.mode, phase, step.name, step.kind)
    started = time.monotonic()
    try:
        report = run_step(ctx, step)
    except (KeyboardInterrupt, Interrupted):
        facts.end_step(step_id, "interrupted", {"seconds": time.monotonic() - started})
        raise
    except BasculeError as exc:
        report = StepReport(FAILED, str(exc))
    except Exception as exc:  # a defect in a step fails the step; the rollback still runs
        log.exception("runbook.step_crashed", step=step.name)
        report = StepReport(FAILED, f"unexpected error: {type(exc).__name__}: {exc}")
    if report.outcome == FAILED and step.optional:
        report = StepReport(WARNED, f"optional step failed: {report.message}", report.detail,
                            report.datasets_failed)  # fmt: skip
    seconds = time.monotonic() - started
    facts.end_step(step_id, report.outcome, _step_detail(report, seconds))
    log.info("runbook.step", run=ctx.run_id, phase=phase, step=step.name, outcome=report.outcome)
    result = StepResult(phase, step, report.outcome, report.message, seconds)
    _report(ctx.options.on_step, result)
    return result


def _run_steps(
    ctx: Context, steps: list[tuple[str, Step]], done: set[tuple[str, str]], out: RunbookOutcome
) -> bool:
    """Run `steps` in order, skipping those in `done`; False at the first failure."""
    for phase, step in steps:
        if (phase, step.name) in done:
            result = StepResult(phase, step, SKIPPED, "passed in the interrupted run", 0.0, True)
            out.results.append(result)
            _report(ctx.options.on_step, result)
            continue
        result = _one(ctx, phase, step)
        out.results.append(result)
        if result.outcome == FAILED:
            return False
    return True


def _totals(journal: Journal, run_id: int) -> tuple[int, int]:
    nbytes = objects = 0
    for row in Facts(journal).steps(run_id):
        nbytes += row.copied_bytes
        objects += row.copied_objects
    return nbytes, objects


def _finish(journal: Journal, out: RunbookOutcome, started: float) -> None:
    nbytes, objects = _totals(journal, out.run_id)
    journal.end_run(out.run_id, out.status, nbytes, objects, time.monotonic() - started)


@contextmanager
def _guarded(journal: Journal, out: RunbookOutcome, started: float) -> Iterator[None]:
    """An interrupt ends the run as 'interrupted' (the next execute resumes it)."""
    try:
        yield
    except (KeyboardInterrupt, Interrupted):
        out.status = "interrupted"
        _finish(journal, out, started)
        raise


# -- rehearse ------------------------------------------------------------------------------


def rehearse(cfg: Config, runbook: Runbook, options: RunOptions) -> RunbookOutcome:
    """Run every phase and then the rollback section in a rehearsal namespace."""
    journal = _main_journal(cfg)
    who = options.who or getpass.getuser()
    try:
        rid = new_rehearsal_id()
        run_id = journal.start_run("rehearse", _run_detail(runbook, who, rehearsal_id=rid))
        out = RunbookOutcome(run_id, "rehearse", "failed", rehearsal_id=rid)
        ctx = Context(rehearsal_config(cfg, rid), cfg, runbook, "rehearse", journal, run_id, rid,
                      options)  # fmt: skip
        out.routing_where = RoutingStore(cfg, rid).where
        started = time.monotonic()
        with _guarded(journal, out, started):
            ok = _run_steps(ctx, runbook.steps(), set(), out)
            if ok and runbook.rollback:
                ok = _run_steps(ctx, [("rollback", s) for s in runbook.rollback], set(), out)
            out.status = "completed" if ok else "failed"
            if not options.keep:
                out.cleanup = remove_rehearsal(cfg, rid)
            _finish(journal, out, started)
        return out
    finally:
        journal.close()


def remove_rehearsal(cfg: Config, rehearsal_id: str) -> str:
    """Delete what the rehearsal wrote: the objects its own journal committed (and the
    uploads it opened), its routing record copy and its folder. Nothing else under its
    prefix is touched: bascule deletes only what its journal recorded writing."""
    rcfg = rehearsal_config(cfg, rehearsal_id)
    removed = 0
    try:
        journal = open_journal(rcfg, create=False)
    except BasculeError as exc:
        return f"cleanup skipped, the rehearsal journal cannot be read: {exc}"
    if journal is not None:
        try:
            for ds in rcfg.datasets:
                removed += _remove_written(journal, ds.name, target_ref(rcfg, ds))
        except ConnectorError as exc:
            return f"cleanup stopped: {exc}"
        finally:
            journal.close()
    try:
        RoutingStore(cfg, rehearsal_id).delete()
    except ConnectorError as exc:
        return f"removed {removed} objects; the rehearsal routing record stays: {exc}"
    shutil.rmtree(rehearsal_dir(cfg, rehearsal_id), ignore_errors=True)
    return f"removed {removed} rehearsal objects and the rehearsal journal"


def _remove_written(journal: Journal, dataset: str, target: EndpointRef) -> int:
    """Delete the committed objects of `dataset` in `journal`, abort its uploads; the count
    of objects deleted."""
    tgt = connector(target)
    removed = 0
    for row in journal.objects(dataset):
        if row.state != "in_progress":
            tgt.delete(row.target_key)
            removed += 1
        elif row.resume_token and isinstance(tgt, PartWriterOpener):
            tgt.abort_upload(row.target_key, row.resume_token)
    abort_orphans(journal, dataset, target, time.time())
    return removed


# -- execute -------------------------------------------------------------------------------


def _resumable_run(journal: Journal, runbook: Runbook) -> RunRow | None:
    runs = [r for r in journal.runs("execute") if r.runbook_sha256 == runbook.sha256]
    return runs[-1] if runs and runs[-1].status in RESUMABLE else None


def _passed_steps(journal: Journal, run_id: int) -> set[tuple[str, str]]:
    rows = Facts(journal).steps(run_id)
    return {(r.phase, r.step) for r in rows if r.outcome in (PASSED, WARNED, SKIPPED)}


def check_execute_allowed(
    cfg: Config, runbook: Runbook, journal: Journal | None, force: str | None
) -> None:
    """UsageError unless a recent passing rehearsal of this runbook exists, or `force`."""
    if force is not None:
        if not force.strip():
            raise UsageError("--force needs --reason TEXT saying why no rehearsal is required")
        return
    days = cfg.switchover.rehearsal_valid_days
    if journal is None or last_passing_rehearsal(journal, runbook.sha256, days) is None:
        raise UsageError(
            f"{runbook.path}: no passing rehearsal of this runbook (sha256 {runbook.sha256[:12]}) "
            f"in the last {days} days; run `bascule runbook rehearse {runbook.path}` first, "
            "or pass --force --reason TEXT"
        )


def precheck_execute(cfg: Config, runbook: Runbook, force_reason: str | None) -> None:
    """UsageError when `execute` would refuse (nothing is written)."""
    if not cfg.journal.exists():
        check_execute_allowed(cfg, runbook, None, force_reason)
        return
    journal = _main_journal(cfg)
    try:
        if _resumable_run(journal, runbook) is None:
            check_execute_allowed(cfg, runbook, journal, force_reason)
    finally:
        journal.close()


def execute(cfg: Config, runbook: Runbook, options: RunOptions) -> RunbookOutcome:
    """Run the runbook against production (see the module docstring).

    Raises UsageError when refused. The caller asks for confirmation before calling."""
    journal = _main_journal(cfg)
    who = options.who or getpass.getuser()
    try:
        previous = _resumable_run(journal, runbook)
        if previous is None:
            check_execute_allowed(cfg, runbook, journal, options.force_reason)
            extra = {"forced": options.force_reason} if options.force_reason else {}
            run_id = journal.start_run("execute", _run_detail(runbook, who, **extra))
            if options.force_reason:
                journal.event(run_id, "execute.forced", reason=options.force_reason, by=who)
            done: set[tuple[str, str]] = set()
        else:
            run_id = previous.id
            done = _passed_steps(journal, run_id)
            journal.event(run_id, "execute.resumed", by=who, steps_done=len(done))
        out = RunbookOutcome(run_id, "execute", "failed", resumed=previous is not None)
        out.routing_where = RoutingStore(cfg, None).where
        ctx = Context(cfg, cfg, runbook, "execute", journal, run_id, None, options)
        started = time.monotonic()
        with _guarded(journal, out, started):
            if _run_steps(ctx, runbook.steps(), done, out):
                out.status = "completed"
            elif _switched(journal, run_id):
                back = [("rollback", s) for s in runbook.rollback]
                ok = bool(back) and _run_steps(ctx, back, set(), out)
                out.status = "rolled_back" if ok else "rollback_failed"
            _finish(journal, out, started)
        return out
    finally:
        journal.close()


def _switched(journal: Journal, run_id: int) -> bool:
    rows = Facts(journal).steps(run_id)
    return any(r.kind == "switch" and r.outcome == PASSED and r.phase != "rollback"
               for r in rows)  # fmt: skip


def rollback(cfg: Config, runbook: Runbook, options: RunOptions) -> RunbookOutcome:
    """Run the rollback section against production. UsageError when it has none."""
    if not runbook.rollback:
        raise UsageError(f"{runbook.path}: the runbook has no rollback section; add one")
    journal = _main_journal(cfg)
    who = options.who or getpass.getuser()
    try:
        run_id = journal.start_run("rollback", _run_detail(runbook, who))
        out = RunbookOutcome(run_id, "rollback", "failed")
        out.routing_where = RoutingStore(cfg, None).where
        ctx = Context(cfg, cfg, runbook, "rollback", journal, run_id, None, options)
        started = time.monotonic()
        with _guarded(journal, out, started):
            ok = _run_steps(ctx, [("rollback", s) for s in runbook.rollback], set(), out)
            out.status = "completed" if ok else "failed"
            _finish(journal, out, started)
        return out
    finally:
        journal.close()

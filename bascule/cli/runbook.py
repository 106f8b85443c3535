"""`bascule runbook rehearse|execute|rollback RUNBOOK`: run a switchover runbook.

Exit codes: 0 the runbook completed; 1 a step or gate failed (after a rollback, if one ran);
2 a bad runbook (file:line), bad config, or execute refused; 3 storage unreachable outside a
step; 4 interrupted (run the same execute again to resume at the step it stopped in).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import typer
from rich.text import Text

from bascule.cli.common import console, err_console, handle_errors, setup_logging
from bascule.cli.migrate import (
    CONFIG_OPT,
    EXECUTOR_OPT,
    graceful_stop,
    human_duration,
    open_runner,
)
from bascule.config import Config, load_config
from bascule.errors import ExitCode, UsageError
from bascule.runbook import engine
from bascule.runbook.context import FAILED, PASSED, SKIPPED, RunOptions, StepResult
from bascule.runbook.schema import Runbook, Step, load_runbook
from bascule.runners import TaskRunner

app = typer.Typer(help="runbook commands", no_args_is_help=True)

RUNBOOK_ARG = typer.Argument(..., help="The runbook YAML file (see runbooks/).")
KEEP_OPT = typer.Option(False, "--keep", help="Keep the rehearsal's copies and journal.")
YES_OPT = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
APPROVE_OPT = typer.Option(
    [], "--approve", help="Approve the approve step NAME up front (repeatable)."
)
FORCE_OPT = typer.Option(False, "--force", help="Execute without a recent passing rehearsal.")
REASON_OPT = typer.Option(None, "--reason", help="Why --force is needed (recorded).")
STYLE = {PASSED: "green", FAILED: "bold red", SKIPPED: "dim"}


def _load(config: Path, runbook: Path) -> tuple[Config, Runbook]:
    cfg = load_config(config)
    book = load_runbook(runbook, [d.name for d in cfg.datasets])
    setup_logging(cfg)
    return cfg, book


def _started(phase: str, step: Step) -> None:
    line = Text.assemble((phase, "bold"), f" / {step.name} ({step.kind}) ...")
    console.print(line, soft_wrap=True)


def _done(result: StepResult) -> None:
    style = STYLE.get(result.outcome, "yellow")
    took = f" in {human_duration(result.seconds)}" if result.seconds >= 1 else ""
    line = Text.assemble("  ", (result.outcome, style), f"{took}: {result.message}")
    console.print(line, soft_wrap=True)


def _interactive_confirm(prompt: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return typer.confirm(prompt, default=False)


def _options(approve: list[str], keep: bool, force_reason: str | None) -> RunOptions:
    return RunOptions(
        keep=keep,
        approvals=frozenset(approve),
        force_reason=force_reason,
        confirm=_interactive_confirm,
        on_step=_done,
        on_start=_started,
    )


@contextmanager
def _runner(executor: str, cfg: Config) -> Iterator[TaskRunner]:
    """The one runner every copy and verify step of this run submits to."""
    runner = open_runner(executor, cfg)
    try:
        yield runner
    finally:
        runner.shutdown()


def _conclude(out: engine.RunbookOutcome) -> None:
    console.print(f"routing record: {out.routing_where}", soft_wrap=True)
    if out.cleanup:
        console.print(f"cleanup: {out.cleanup}", soft_wrap=True)
    elif out.rehearsal_id:
        console.print(f"kept rehearsal {out.rehearsal_id} (--keep)")
    if out.ok:
        console.print(Text.assemble((f"{out.mode} completed", "green"), f" (run {out.run_id})"))
        return
    bad = out.failed_step
    where = f" at {bad.phase} / {bad.step.name} ({bad.step.where})" if bad else ""
    what = f": {bad.message}" if bad else ""
    err_console.print(f"error: {out.mode} {out.status}{where}{what}", markup=False, soft_wrap=True)
    raise typer.Exit(int(ExitCode.FAILED))


@app.command("rehearse")
@handle_errors
def rehearse_command(
    runbook: Path = RUNBOOK_ARG,
    config: Path = CONFIG_OPT,
    keep: bool = KEEP_OPT,
    executor: str = EXECUTOR_OPT,
) -> None:
    """Run the whole runbook in a rehearsal namespace; production is never touched."""
    cfg, book = _load(config, runbook)
    with graceful_stop() as stop, _runner(executor, cfg) as runner:
        opts = replace(_options([], keep, None), stop=stop, runner=runner)
        out = engine.rehearse(cfg, book, opts)
    console.print(f"rehearsal {out.rehearsal_id} of {book.name} ({book.sha256[:12]})")
    _conclude(out)


@app.command("execute")
@handle_errors
def execute_command(
    runbook: Path = RUNBOOK_ARG,
    config: Path = CONFIG_OPT,
    yes: bool = YES_OPT,
    approve: list[str] = APPROVE_OPT,
    force: bool = FORCE_OPT,
    reason: str | None = REASON_OPT,
    executor: str = EXECUTOR_OPT,
) -> None:
    """Run the runbook against production (needs a recent passing rehearsal)."""
    if force and not reason:
        raise UsageError("--force needs --reason TEXT saying why no rehearsal is required")
    cfg, book = _load(config, runbook)
    reason_text = reason if force else None
    engine.precheck_execute(cfg, book, reason_text)  # refuse before asking anything
    _confirm(yes, f"Execute {book.name} against production (routing record will switch)?")
    with graceful_stop() as stop, _runner(executor, cfg) as runner:
        opts = replace(_options(approve, False, reason_text), stop=stop, runner=runner)
        out = engine.execute(cfg, book, opts)
    if out.resumed:
        console.print(f"resumed execute run {out.run_id} at the step it stopped in")
    _conclude(out)


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("confirmation needed: pass --yes (no terminal to ask on)")
    if not typer.confirm(question, default=False):
        raise UsageError("not confirmed; nothing was run")


@app.command("rollback")
@handle_errors
def rollback_command(
    runbook: Path = RUNBOOK_ARG,
    config: Path = CONFIG_OPT,
    yes: bool = YES_OPT,
    approve: list[str] = APPROVE_OPT,
    executor: str = EXECUTOR_OPT,
) -> None:
    """Run the runbook's rollback section against production (routing back to the source)."""
    cfg, book = _load(config, runbook)
    _confirm(yes, f"Run the rollback section of {book.name} against production?")
    with graceful_stop() as stop, _runner(executor, cfg) as runner:
        opts = replace(_options(approve, False, None), stop=stop, runner=runner)
        out = engine.rollback(cfg, book, opts)
    _conclude(out)

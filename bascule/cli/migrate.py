"""`bascule plan` and `bascule migrate`."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from bascule.cli.common import console, echo, err_console, handle_errors, setup_logging
from bascule.cli.tables import dataset_table
from bascule.config import Config, load_config
from bascule.connectors.base import display_key
from bascule.errors import ConnectorError
from bascule.migration import service
from bascule.migration.plan import PlanSummary, item_record
from bascule.runners import TaskRunner

CONFIG_OPT = typer.Option(
    Path("bascule.yaml"), "--config", "-c", help="The bascule.yaml to use.", show_default=True
)
DATASET_OPT = typer.Option(None, "--dataset", "-d", help="Only this dataset (default: all).")
EXECUTOR_OPT = typer.Option(
    "auto",
    "--executor",
    help="Where tasks run: auto (processes:N, N the cores, when every store of the run is a "
    "folder on a local disk; local otherwise), local (threads), processes:N (N worker "
    "processes of threads: for CPU-bound work such as many small local files), dask-local:N "
    "(a local Dask cluster), dask+tls://HOST:PORT (certificates from "
    "BASCULE_DASK_TLS_*_FILE) or dask://127.0.0.1:PORT.",
)


def open_runner(executor: str, cfg: Config, dataset: str | None = None) -> TaskRunner:
    """The runner `--executor` names, `auto` chosen for the datasets of the run (the choice
    goes to the log file: an `executor` event with what was asked, what runs and how many
    of its workers were started early, see cli/early.py; those not taken are ended)."""
    from bascule.logging import get_logger
    from bascule.processes import ProcessRunner, end_early
    from bascule.runners import choose_executor, make_runner

    chosen = choose_executor(executor, cfg, dataset)
    try:
        runner = make_runner(chosen, cfg.transfer.concurrency)
    finally:
        end_early()
    early = runner.started_early if isinstance(runner, ProcessRunner) else 0
    get_logger("bascule.cli").info("executor", asked=executor, chosen=chosen, started_early=early)
    return runner


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _plan_table(plan: PlanSummary) -> Table:
    # most important first: at a narrow width the right-most columns are left out first
    headers = ("dataset", "to copy", "bytes", "parts", "blocked", "unchanged", "extra on target")
    rows = [
        (
            d.dataset,
            str(d.objects),
            human_bytes(d.bytes_to_copy),
            str(d.parts),
            str(d.blocked),
            str(d.unchanged),
            str(d.extra),
        )
        for d in plan.datasets
    ]
    return dataset_table(console, "Migration plan", headers, rows)


def widened_parts(cfg: Config, plan: PlanSummary) -> list[str]:
    """One line per object whose parts the planner widened beyond transfer.part_size to
    stay within the target's part-count limit (the first few, then a count)."""
    lines = [
        f"part size: {d.dataset}:{display_key(o.source_key)} in {o.parts} parts of "
        f"{human_bytes(o.part_size)} (transfer.part_size {human_bytes(cfg.transfer.part_size)} "
        "would exceed the target's part limit)"
        for d in plan.datasets
        for o in d.first_widened
    ]
    more = sum(d.widened - len(d.first_widened) for d in plan.datasets)
    if more:
        lines.append(f"part size: {more} more objects with widened parts")
    return lines


def print_plan(cfg: Config, plan: PlanSummary) -> None:
    console.print(_plan_table(plan))
    console.print(
        f"total: {plan.objects} objects, {human_bytes(plan.bytes_to_copy)}, {plan.parts} parts"
    )
    eta = service.estimated_seconds(cfg, plan)
    if plan.bytes_to_copy and eta is not None:
        console.print(f"estimated duration at the last measured throughput: {human_duration(eta)}")
    elif plan.bytes_to_copy:
        console.print("estimated duration: unknown until a first migration has run")
    for line in widened_parts(cfg, plan):
        console.print(line)
    for line in service.stale_upload_notices(cfg):
        console.print(line)
    for b in plan.first_blocked:
        console.print(
            f"blocked: {b.dataset}:{display_key(b.source_key)} -> {display_key(b.target_key)}: "
            f"{b.reason}"
        )
    if plan.blocked > len(plan.first_blocked):
        console.print(f"blocked: {plan.blocked - len(plan.first_blocked)} more (see --json)")
    print_skipped(plan)
    for d in plan.datasets:
        for key in d.first_extra[:10]:
            console.print(f"extra on target ({d.dataset}): {display_key(key)}")


def print_skipped(plan: PlanSummary) -> None:
    """The source folders left out on purpose (a connector's reserved folders), by name."""
    for d in plan.datasets:
        for folder in d.skipped:
            console.print(
                f"skipped (reserved by bascule): {d.dataset}:{display_key(folder)}; "
                "move its files elsewhere to copy them"
            )


def plan_command(
    config: Path = CONFIG_OPT,
    dataset: str | None = DATASET_OPT,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the plan as JSON lines: one per object (to copy, unchanged, extra, "
        "blocked), then one summary line.",
    ),
) -> None:
    """Show what `migrate` would copy: new and changed objects, parts, totals. Writes nothing."""
    _plan(config, dataset, as_json)


@handle_errors
def _plan(config: Path, dataset: str | None, as_json: bool) -> None:
    cfg = load_config(config)
    summary = _read_plan(cfg, dataset, as_json)
    if as_json:
        line = {"type": "summary", **summary.to_dict()}
        line["estimated_seconds"] = service.estimated_seconds(cfg, summary)
        echo(json.dumps(line))
        return
    print_plan(cfg, summary)


STATUS_EVERY_S = 0.1  # how often the planning spinner's count is redrawn


@contextmanager
def planning_status() -> Iterator[Callable[[], None]]:
    """A spinner on stderr, where stderr is a terminal, with the count of entries the plan
    has read so far (ten million objects take minutes to list); yields the function to call
    per entry. Nothing is drawn elsewhere: stdout stays the plan's alone (`--json`)."""
    if not err_console.is_terminal:
        yield lambda: None
        return
    count, due = 0, time.monotonic()
    with err_console.status("planning: listing source and target") as status:

        def seen() -> None:
            nonlocal count, due
            count += 1
            now = time.monotonic()
            if now >= due:
                status.update(f"planning: {count:,} objects read")
                due = now + STATUS_EVERY_S

        yield seen


def _read_plan(cfg: Config, dataset: str | None, as_json: bool) -> PlanSummary:
    """Read the plan's stream once: printed line by line with `as_json`, else only counted."""
    journal = service.open_journal(cfg, create=False)
    try:
        summary, items = service.plan_stream(cfg, dataset, journal)
        with planning_status() as seen:
            for item in items:
                seen()
                if as_json:
                    echo(json.dumps(item_record(item)))
        return summary
    finally:
        if journal is not None:
            journal.close()


class RichProgress:
    """The executor's ProgressSink drawn as a rich bar (bytes, objects, rate, ETA)."""

    def __init__(self, progress: Progress, label: str = "copy") -> None:
        self._progress = progress
        self._bytes: TaskID = progress.add_task(label, total=0)
        self._objects: TaskID = progress.add_task("objects", total=0)

    def add_total(self, objects: int, nbytes: int) -> None:
        for task, extra in ((self._bytes, nbytes), (self._objects, objects)):
            current = self._progress.tasks[task].total or 0
            self._progress.update(task, total=current + extra)

    def advance(self, nbytes: int) -> None:
        self._progress.advance(self._bytes, nbytes)

    def object_done(self, key: str) -> None:
        self._progress.advance(self._objects, 1)


def make_progress() -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


@contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    """First Ctrl-C (or SIGTERM): finish the parts in flight, then stop (exit 4).
    A second Ctrl-C stops at once; the journal still loses only the parts in flight."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        console.print("stopping after the parts in flight (Ctrl-C again to stop now)...")

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def migrate_command(
    config: Path = CONFIG_OPT,
    dataset: str | None = DATASET_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; write nothing."),
    executor: str = EXECUTOR_OPT,
) -> None:
    """Copy the datasets, encrypted, part by part; re-run to resume (nothing done is resent).

    Memory: about 100 MiB + 1.1 x transfer.max_bytes_in_flight (default 128 MiB)."""
    _migrate(config, dataset, dry_run, executor)


@handle_errors
def _migrate(config: Path, dataset: str | None, dry_run: bool, executor: str) -> None:
    cfg = load_config(config)
    setup_logging(cfg)
    if dry_run:
        print_plan(cfg, _read_plan(cfg, dataset, as_json=False))
        console.print("dry run: nothing was written")
        return
    runner = open_runner(executor, cfg, dataset)
    with graceful_stop() as stop, make_progress() as bar:
        try:
            outcome = service.migrate(
                cfg, dataset, runner=runner, progress=RichProgress(bar), stop=stop
            )
        except ConnectorError as exc:
            if not exc.retryable:
                raise
            raise type(exc)(
                f"{exc}; the journal keeps what is done: run `bascule migrate` again to resume",
                connector=exc.connector,
                key=exc.key,
            ) from None
        finally:
            runner.shutdown()
    _summary(outcome)


def _summary(outcome: service.MigrateOutcome) -> None:
    stats = outcome.stats
    plan = outcome.plan
    unchanged = plan.unchanged
    print_skipped(plan)
    if not plan.objects:
        console.print(f"nothing to copy: {unchanged} objects already copied and unchanged")
        return
    rate = stats.bytes_sent / outcome.seconds if outcome.seconds else 0.0
    console.print(
        f"copied {stats.objects_committed} objects, {human_bytes(stats.bytes_sent)} in "
        f"{human_duration(outcome.seconds)} ({human_bytes(rate)}/s); {unchanged} unchanged"
    )
    for key in stats.restarted:
        console.print(f"source changed during the copy, copied again with a new key: {key}")
    if stats.orphans_aborted:
        console.print(f"aborted {stats.orphans_aborted} orphaned upload(s)")

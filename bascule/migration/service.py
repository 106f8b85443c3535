"""The migration use cases behind `bascule plan` and `bascule migrate`, free of printing.

Order matters for "nothing is written on bad input": the config is validated, then every
source and target is listed (missing container, wrong credentials fail here), and only then
is the journal opened or created and anything written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from bascule.config import Config, Dataset, identity_path
from bascule.connectors.base import SkipReporter, display_key
from bascule.endpoints import EndpointRef, connector
from bascule.errors import Interrupted, PlanError
from bascule.migration.coordinator import (
    Coordinator,
    ExecutorOptions,
    ProgressSink,
    RunStats,
    abort_orphans,
)
from bascule.migration.journal import Journal, fingerprint
from bascule.migration.plan import (
    DatasetPlan,
    DatasetSpec,
    JournalObject,
    MigrationPlan,
    ObjectPlan,
    plan_dataset,
)
from bascule.runners import TaskRunner, ThreadRunner

log = structlog.get_logger("bascule.migrate")


def source_ref(cfg: Config, ds: Dataset) -> EndpointRef:
    return EndpointRef(ds.source.endpoint, cfg.endpoints[ds.source.endpoint], ds.source.store)


def target_ref(cfg: Config, ds: Dataset) -> EndpointRef:
    return EndpointRef(ds.target.endpoint, cfg.endpoints[ds.target.endpoint], ds.target.store)


def config_fingerprint(cfg: Config) -> str:
    """What a journal is bound to: the project and where each dataset goes."""
    return fingerprint(
        {
            "project": cfg.project,
            "datasets": sorted(
                (
                    d.name,
                    d.source.endpoint,
                    d.source.store,
                    d.source.prefix,
                    d.target.endpoint,
                    d.target.store,
                    d.target.prefix,
                    d.encrypt,
                )
                for d in cfg.datasets
            ),
        }
    )


def open_journal(cfg: Config, *, create: bool) -> Journal | None:
    """The config's journal; None when it does not exist and `create` is false."""
    if not create and not cfg.journal.exists():
        return None
    return Journal(cfg.journal, config_fingerprint(cfg), create=create)


def check_identity_file(cfg: Config) -> None:
    """A private key readable by others is refused even where it is not needed."""
    path = identity_path(cfg, required=False, why="")
    if path is not None:
        from bascule.age.stream import load_identities

        load_identities(path)


def plan_one(cfg: Config, ds: Dataset, journal: Journal | None) -> DatasetPlan:
    src = connector(source_ref(cfg, ds))
    tgt = connector(target_ref(cfg, ds))
    spec = DatasetSpec(
        ds.name,
        ds.source.prefix,
        ds.target.prefix,
        ds.encrypt,
        cfg.transfer.part_size,
        len(cfg.encryption.recipients),
    )
    view: dict[str, JournalObject] = journal.plan_view(ds.name) if journal else {}
    planned = plan_dataset(
        spec,
        src.list(ds.source.prefix),
        tgt.list(ds.target.prefix),
        view,
        tgt.capabilities,
        tgt.key_problem,
    )
    if isinstance(src, SkipReporter):
        planned = replace(planned, skipped=tuple(src.skipped(ds.source.prefix)))
    return planned


def make_plan(cfg: Config, dataset: str | None, journal: Journal | None) -> MigrationPlan:
    return MigrationPlan(tuple(plan_one(cfg, ds, journal) for ds in cfg.select(dataset)))


@dataclass(frozen=True)
class MigrateOutcome:
    plan: MigrationPlan
    stats: RunStats
    seconds: float
    run_id: int


def _work(
    cfg: Config, plan: MigrationPlan
) -> Iterator[tuple[ObjectPlan, EndpointRef, EndpointRef]]:
    for dplan in plan.datasets:
        ds = cfg.dataset(dplan.dataset)
        src, tgt = source_ref(cfg, ds), target_ref(cfg, ds)
        for obj in dplan.objects:
            yield obj, src, tgt


def migrate(
    cfg: Config,
    dataset: str | None = None,
    *,
    runner: TaskRunner | None = None,
    progress: ProgressSink | None = None,
    stop: threading.Event | None = None,
    command: str = "migrate",
) -> MigrateOutcome:
    """Copy what the plan says; idempotent (a re-run resumes from the journal)."""
    check_identity_file(cfg)
    plan = make_plan(cfg, dataset, open_journal(cfg, create=False))
    if plan.blocked:
        raise PlanError(blocked_message(plan))
    journal = open_journal(cfg, create=True)
    assert journal is not None
    try:
        return _run(cfg, dataset, journal, runner, progress, stop, command)
    finally:
        journal.close()


BLOCKED_SHOWN = 3


def blocked_message(plan: MigrationPlan) -> str:
    """One line: how many objects the targets cannot store, the first few, the first reason
    and what to do."""
    blocked = plan.blocked
    shown = ", ".join(f"{b.dataset}:{display_key(b.source_key)}" for b in blocked[:BLOCKED_SHOWN])
    more = f" and {len(blocked) - BLOCKED_SHOWN} more" if len(blocked) > BLOCKED_SHOWN else ""
    return (
        f"{len(blocked)} object(s) cannot be stored on the target: {shown}{more} "
        f"({blocked[0].reason}); nothing was copied: rename them at the source or exclude "
        "them by narrowing the source prefix (`bascule plan` lists them all)"
    )


def _run(
    cfg: Config,
    dataset: str | None,
    journal: Journal,
    runner: TaskRunner | None,
    progress: ProgressSink | None,
    stop: threading.Event | None,
    command: str,
) -> MigrateOutcome:
    plan = make_plan(cfg, dataset, journal)  # again, now with the journal's view
    since = time.time()
    run_id = journal.start_run(command, {"dataset": dataset, "objects": plan.objects})
    if progress:
        progress.add_total(plan.objects, plan.bytes_to_copy)
    opts = ExecutorOptions.from_transfer(cfg.transfer)
    own_runner = runner is None
    runner = runner or ThreadRunner(opts.concurrency, "part")
    coordinator = Coordinator(
        journal, run_id, runner, opts, cfg.encryption.recipients, progress, stop
    )
    started = time.monotonic()
    status = "failed"
    try:
        stats = coordinator.run(_work(cfg, plan))
        for ds in cfg.select(dataset):
            stats.orphans_aborted += abort_orphans(journal, ds.name, target_ref(cfg, ds), since)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, Interrupted) else "failed"
        raise
    finally:
        if own_runner:
            runner.shutdown()
        seconds = time.monotonic() - started
        s = coordinator.stats
        journal.end_run(run_id, status, s.bytes_sent, s.objects_committed, seconds)
        log.info("run.end", run=run_id, status=status, bytes=s.bytes_sent, seconds=seconds)
    return MigrateOutcome(plan, stats, seconds, run_id)


def estimated_seconds(cfg: Config, plan: MigrationPlan) -> float | None:
    journal = open_journal(cfg, create=False)
    if journal is None:
        return None
    try:
        rate = journal.last_throughput()
    finally:
        journal.close()
    return plan.bytes_to_copy / rate if rate else None


def journal_dir(cfg: Config) -> Path:
    return cfg.journal.parent

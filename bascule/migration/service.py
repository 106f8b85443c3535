"""The migration use cases behind `bascule plan` and `bascule migrate`, free of printing.

Order matters for "nothing is written on bad input": the config is validated, then every
source and target is listed (missing container, wrong credentials fail here), and only then
is the journal opened or created and anything written.

Memory does not grow with the object count: the plan is a stream (`plan_stream`), read once
for its counters before anything is written, then again, lazily, by the coordinator. A
listing that is not in key order (`Capabilities.sorted_listing` false) is sorted on disk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from bascule.age.keys import precompute_ephemerals
from bascule.config import Config, Dataset, identity_path
from bascule.connectors.base import Connector, ObjectInfo, SkipReporter, display_key
from bascule.endpoints import EndpointRef, connector
from bascule.errors import Interrupted, PlanError
from bascule.migration import part_checksums
from bascule.migration.coordinator import Coordinator, ExecutorOptions, RunStats
from bascule.migration.extsort import external_sort
from bascule.migration.journal import Journal, fingerprint
from bascule.migration.orphans import abort_orphans
from bascule.migration.plan import (
    DatasetSpec,
    DatasetTally,
    ObjectPlan,
    PlanItem,
    PlanSummary,
    in_key_order,
    stream_dataset,
)
from bascule.migration.progress import NullProgress, ProgressSink, ThrottledProgress
from bascule.migration.spool import PlanSpool
from bascule.processes import ProcessRunner
from bascule.runners import TaskRunner, ThreadRunner

log = structlog.get_logger("bascule.migrate")


def source_ref(cfg: Config, ds: Dataset) -> EndpointRef:
    return EndpointRef.of(ds.source.endpoint, cfg.endpoints[ds.source.endpoint], ds.source.store)


def target_ref(cfg: Config, ds: Dataset) -> EndpointRef:
    return EndpointRef.of(ds.target.endpoint, cfg.endpoints[ds.target.endpoint], ds.target.store)


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


def _by_key(o: ObjectInfo) -> str:
    return o.key


def sorted_listing(conn: Connector, prefix: str) -> Iterator[ObjectInfo]:
    """`conn.list(prefix)` in key order (sorted on disk where the backend does not list in
    order), checked as it is read."""
    items: Iterable[ObjectInfo] = conn.list(prefix)
    if not conn.capabilities.sorted_listing:
        items = external_sort(items, _by_key)
    return in_key_order(items, _by_key, conn.url)


def dataset_items(
    cfg: Config, ds: Dataset, journal: Journal | None, tally: DatasetTally
) -> Iterator[PlanItem]:
    """One dataset's plan, item by item, counted into `tally`."""
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
    if isinstance(src, SkipReporter):
        tally.skipped = tuple(src.skipped(ds.source.prefix))
    rows = journal.plan_rows(ds.name) if journal else iter(())
    source = sorted_listing(src, ds.source.prefix)
    target = sorted_listing(tgt, ds.target.prefix)
    return stream_dataset(
        spec, source, target, rows, tgt.capabilities, tally, key_problem=tgt.key_problem
    )


def plan_stream(
    cfg: Config, dataset: str | None, journal: Journal | None
) -> tuple[PlanSummary, Iterator[PlanItem]]:
    """The plan as a stream, and its summary, whose counters are final once the stream is
    exhausted. The stream is read once, lazily (a dataset is listed when it is reached)."""
    summary = PlanSummary()
    return summary, _items(cfg, cfg.select(dataset), journal, summary)


def _items(
    cfg: Config, datasets: Iterable[Dataset], journal: Journal | None, summary: PlanSummary
) -> Iterator[PlanItem]:
    for ds in datasets:
        tally = DatasetTally(ds.name)
        summary.datasets.append(tally)
        yield from dataset_items(cfg, ds, journal, tally)


def count_plan(cfg: Config, dataset: str | None, journal: Journal | None) -> PlanSummary:
    """The plan's counters (and first blocked and extra keys), nothing held per object."""
    summary, items = plan_stream(cfg, dataset, journal)
    for _ in items:
        pass
    return summary


@dataclass(frozen=True)
class MigrateOutcome:
    plan: PlanSummary
    stats: RunStats
    seconds: float
    run_id: int


def _work(
    cfg: Config, items: Iterable[PlanItem]
) -> Iterator[tuple[ObjectPlan, EndpointRef, EndpointRef]]:
    refs: dict[str, tuple[EndpointRef, EndpointRef]] = {}
    for item in items:
        if not isinstance(item, ObjectPlan):
            continue
        if item.dataset not in refs:
            ds = cfg.dataset(item.dataset)
            refs[item.dataset] = (source_ref(cfg, ds), target_ref(cfg, ds))
        yield item, *refs[item.dataset]


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
    _keys_ahead(cfg, dataset, runner)
    spool = PlanSpool(cfg.journal.parent if cfg.journal.parent.is_dir() else None)
    try:
        counted, mark = _count_read_only(cfg, dataset, spool, progress or NullProgress())
        if counted.blocked:
            raise PlanError(blocked_message(counted))
        journal = open_journal(cfg, create=True)
        assert journal is not None
        try:
            # The counting pass's plan holds while no other run wrote the journal since.
            replay = spool if journal.change_mark() == mark else None
            return _run(cfg, dataset, journal, counted, replay, runner, progress, stop, command)
        finally:
            journal.close()
    finally:
        spool.close()


def _keys_ahead(cfg: Config, dataset: str | None, runner: TaskRunner | None) -> None:
    """Worker processes with a core to spare make the age headers' ephemeral X25519 shares
    while this process runs the counting pass on its own core (20,000 tiny files, 2 cores:
    0.96 of the wall time, ten alternating pairs), for the objects they will encrypt."""
    if isinstance(runner, ProcessRunner) and any(ds.encrypt for ds in cfg.select(dataset)):
        runner.while_idle(precompute_ephemerals, tuple(cfg.encryption.recipients))


BLOCKED_SHOWN = 3


def blocked_message(plan: PlanSummary) -> str:
    """One line: how many objects the targets cannot store, the first few, the first reason
    and what to do."""
    first = plan.first_blocked
    shown = ", ".join(f"{b.dataset}:{display_key(b.source_key)}" for b in first[:BLOCKED_SHOWN])
    more = f" and {plan.blocked - BLOCKED_SHOWN} more" if plan.blocked > BLOCKED_SHOWN else ""
    return (
        f"{plan.blocked} object(s) cannot be stored on the target: {shown}{more} "
        f"({first[0].reason}); nothing was copied: rename them at the source or exclude "
        "them by narrowing the source prefix (`bascule plan` lists them)"
    )


def _count_read_only(
    cfg: Config, dataset: str | None, spool: PlanSpool, progress: ProgressSink
) -> tuple[PlanSummary, int]:
    """The counting pass, before anything is written (no writer lock taken yet): the plan's
    counters, its objects into `spool`, and the journal's change mark it was made against.
    The objects to copy reach `progress` as totals while the listing goes on (10M objects
    take minutes to list: the bar shows them growing, not a standstill at 0/0)."""
    reader = open_journal(cfg, create=False)
    totals = ThrottledProgress(progress)
    try:
        summary, items = plan_stream(cfg, dataset, reader)
        for item in items:
            if isinstance(item, ObjectPlan):
                spool.add(item)
                totals.add_total(1, item.size)
        totals.flush()
        return summary, reader.change_mark() if reader is not None else 0
    finally:
        if reader is not None:
            reader.close()


def _run(
    cfg: Config,
    dataset: str | None,
    journal: Journal,
    counted: PlanSummary,
    spool: PlanSpool | None,
    runner: TaskRunner | None,
    progress: ProgressSink | None,
    stop: threading.Event | None,
    command: str,
) -> MigrateOutcome:
    # The counting pass's objects, or (the journal changed since) the plan again, now with
    # the writer's journal, read lazily by the coordinator; the counting pass gave the
    # totals (`_count_read_only`) and any difference is settled at the end.
    plan: PlanSummary
    items: Iterable[PlanItem]
    if spool is not None:
        plan, items = counted, spool.replay()
    else:
        plan, items = plan_stream(cfg, dataset, journal)
    since = time.time()
    run_id = journal.start_run(command, {"dataset": dataset, "objects": counted.objects})
    opts = ExecutorOptions.from_transfer(cfg.transfer)
    own_runner = runner is None
    runner = runner or ThreadRunner(opts.concurrency, "part")
    modes = part_checksums.run_checksums(cfg)
    guard = part_checksums.ResumeGuard(
        journal, part_checksums.record_run(journal, run_id, modes), modes
    )
    coordinator = Coordinator(
        journal, run_id, runner, opts, cfg.encryption.recipients, progress, stop,
        objects_hint=counted.objects, resume_guard=guard,
    )  # fmt: skip
    started = time.monotonic()
    status = "failed"
    try:
        stats = coordinator.run(_work(cfg, items))
        if progress:
            progress.add_total(
                plan.objects - counted.objects, plan.bytes_to_copy - counted.bytes_to_copy
            )
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


def stale_upload_notices(cfg: Config) -> list[str]:
    """One line per endpoint whose unfinished uploads the next run restarts because they
    were opened under another part checksum (`part_checksums`); [] without a journal."""
    journal = open_journal(cfg, create=False)
    if journal is None:
        return []
    try:
        return [s.notice() for s in part_checksums.stale_uploads(cfg, journal)]
    finally:
        journal.close()


def estimated_seconds(cfg: Config, plan: PlanSummary) -> float | None:
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

"""`bascule verify` as a library call: `verify(cfg, ...) -> VerifyReport`, free of printing.

Order: arguments and the identity are checked first (ConfigError, exit 2, before anything is
read), then every source and target listing is started (a missing container or a refused
credential fails here, ConnectorError, exit 3), and only then is the journal opened and a
``verify`` run started. The run ends ``completed`` when nothing was found, ``failed`` when
something was (or the run stopped on an error), ``interrupted`` on Ctrl-C.

Memory does not grow with the object count: both listings and the journal's rows are joined
as sorted streams (`checks.stream_pairs`, as `bascule plan` does), each object's record is
made, checked and handed on (to the journal in batches of `VERDICT_BATCH` rows through
`Facts.record_verifications`, to `on_record`, counted into the report) and then dropped.
Records come out in target-key order, whatever order their reads finish in; at most
`WINDOW` records wait for their reads.

Levels: ``quick`` reads no data; ``full`` re-reads both sides (parts in parallel on the
runner, bounded to 2 x transfer.concurrency tasks in flight, ~2 MiB each); ``rows`` counts
rows on both sides. See `checks.py` for what each compares.

Small objects (one part, at most `reread.SMALL_OBJECT_BYTES`) are checked whole: each side
is read once for both the re-read and the row count, the age header unwrapped once, and up
to `SMALL_BATCH_OBJECTS` of them go in one task (`reread.check_small_objects`), with the
results the separate tasks give.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import Any, Literal, TypeVar

from bascule.age.sizes import header_length
from bascule.config import Config, Dataset, identity_path
from bascule.connectors.base import ObjectInfo
from bascule.endpoints import EndpointRef
from bascule.errors import UsageError
from bascule.migration.journal import Facts, Journal, VerdictRow
from bascule.migration.plan import part_count
from bascule.migration.progress import NullProgress, ProgressSink, ThrottledProgress
from bascule.migration.service import open_journal, sorted_listing, source_ref, target_ref
from bascule.migration.tasks import composite
from bascule.runners import TaskRunner, ThreadRunner
from bascule.verification.checks import (
    Copy,
    Pair,
    PairCount,
    Reread,
    RowsRead,
    full_findings,
    quick_findings,
    rows_findings,
    stream_pairs,
)
from bascule.verification.counts import CsvDialect, detect_format
from bascule.verification.evidence import ObjectRecord, SampleInfo, VerifyReport
from bascule.verification.reread import (
    SMALL_BATCH_BYTES,
    SMALL_BATCH_OBJECTS,
    SMALL_OBJECT_BYTES,
    PartRange,
    ReadResult,
    ReadTask,
    RowsResult,
    RowsTask,
    SmallCheck,
    SmallResult,
    check_small_objects,
    count_object_rows,
    read_parts,
)

Level = Literal["quick", "full"]
T = TypeVar("T")

VERDICT_BATCH = 5_000  # verdict rows per journal transaction
WINDOW = 4_096  # records held while the ones before them wait for their reads


@dataclass
class _Listing:
    """One dataset's two listings, started (their first page read) but not consumed."""

    dataset: Dataset
    sources: Iterator[ObjectInfo]
    targets: Iterator[ObjectInfo]
    etag_is_md5: bool


def verify(
    cfg: Config,
    dataset: str | None = None,
    *,
    level: Level = "quick",
    rows: bool = False,
    sample: float | None = None,
    runner: TaskRunner | None = None,
    progress: ProgressSink | None = None,
    on_record: Callable[[ObjectRecord], None] | None = None,
) -> VerifyReport:
    """Verify the copies of `dataset` (default: every dataset) and return the counters.

    Every object's record is handed to `on_record` once complete, in target-key order per
    dataset (the `--report FILE` writer; tests), and recorded in the journal; the report
    keeps counters and the first findings only.

    Raises UsageError for a bad level or sample, ConfigError when full or rows need the
    identity of an encrypted dataset and none is set, ConnectorError when a side cannot be
    listed, JournalError when the journal is foreign or unusable. A mismatch is never raised:
    it is a finding in the report (`report.ok` is false)."""
    _check_args(level, sample)
    datasets = cfg.select(dataset)
    _check_identity(cfg, datasets, level, rows)
    listings = [_list(cfg, ds) for ds in datasets]
    journal = open_journal(cfg, create=True)
    assert journal is not None
    try:
        return _run(cfg, journal, listings, _Options(level, rows, sample, on_record),
                    runner, progress)  # fmt: skip
    finally:
        journal.close()


def _check_args(level: str, sample: float | None) -> None:
    if level not in ("quick", "full"):
        raise UsageError(f"--level {level!r}: use quick or full")
    if sample is not None and not 0 < sample <= 100:
        raise UsageError(f"--sample {sample}: give a percentage above 0 and at most 100")


def _check_identity(cfg: Config, datasets: list[Dataset], level: str, rows: bool) -> None:
    if not any(ds.encrypt for ds in datasets) or (level == "quick" and not rows):
        return
    why = "verify --level full" if level == "full" else "verify --rows"
    path = identity_path(cfg, required=True, why=f"{why} of an encrypted dataset")
    assert path is not None
    from bascule.age.stream import load_identities

    load_identities(path)  # a missing, unreadable or shared key file stops here, not per task


def _started(items: Iterator[T]) -> Iterator[T]:
    """`items` with its first item already read: a listing that cannot start fails now."""
    first = next(items, None)
    return items if first is None else chain((first,), items)


def _list(cfg: Config, ds: Dataset) -> _Listing:
    from bascule.endpoints import connector

    src = connector(source_ref(cfg, ds))
    tgt = connector(target_ref(cfg, ds))
    sources = _started(sorted_listing(src, ds.source.prefix))
    targets = _started(sorted_listing(tgt, ds.target.prefix))
    return _Listing(ds, sources, targets, tgt.url.startswith("s3://"))


def _copies(journal: Journal, dataset: str) -> Iterator[tuple[str, Copy]]:
    """The journal's record of each target key of `dataset`, ascending by target key."""
    for r in journal.copy_rows(dataset):
        yield r[0], Copy(r[1], r[2], r[3], r[4], r[5], r[6] in ("committed", "verified"), r[7],
                         r[8], r[9] or None, tuple(r[10].split(",")) if r[10] else ())  # fmt: skip


@dataclass(frozen=True)
class _Options:
    level: Level
    rows: bool
    sample: float | None
    on_record: Callable[[ObjectRecord], None] | None


@dataclass(frozen=True)
class _Where:
    """What the tasks of one dataset's objects need from the config."""

    source: EndpointRef
    target: EndpointRef
    format: str
    identity_env: str | None
    part_size: int
    max_attempts: int
    csv: CsvDialect | None


def _where(cfg: Config, ds: Dataset) -> _Where:
    given = ds.csv
    csv = None
    if given is not None:
        csv = CsvDialect(given.delimiter, given.quote, given.encoding, given.header)
    return _Where(source_ref(cfg, ds), target_ref(cfg, ds), ds.format,
                  cfg.encryption.identity_file_env, cfg.transfer.part_size,
                  cfg.transfer.max_attempts, csv)  # fmt: skip


def _run(
    cfg: Config,
    journal: Journal,
    listings: list[_Listing],
    opts: _Options,
    runner: TaskRunner | None,
    progress: ProgressSink | None,
) -> VerifyReport:
    run_id = journal.start_run(
        "verify", {"datasets": [li.dataset.name for li in listings], "level": opts.level,
                   "rows": opts.rows, "sample": opts.sample}
    )  # fmt: skip
    started = time.monotonic()
    report = VerifyReport(opts.level, opts.rows, run_id=run_id)
    sink = _Sink(Facts(journal), run_id, report, opts.on_record)
    own = runner is None
    pool = runner or ThreadRunner(cfg.transfer.concurrency, "verify")
    bar = ThrottledProgress(progress or NullProgress())
    pipeline = _Pipeline(pool, max(1, 2 * cfg.transfer.concurrency), sink.add, bar)
    status = "failed"
    try:
        kept = total = 0
        for li in listings:
            count = PairCount()
            _check_dataset(cfg, journal, li, opts, pipeline, count)
            kept, total = kept + count.kept, total + count.total
        pipeline.finish()
        sink.flush()
        bar.flush()
        report.bytes_read = pipeline.bytes_read
        report.sample = SampleInfo(opts.sample, kept, total) if opts.sample is not None else None
        report.seconds = time.monotonic() - started
        status = "completed" if report.ok else "failed"
        return report
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if own:
            pool.shutdown()
        journal.end_run(run_id, status, pipeline.bytes_read, report.objects,
                        time.monotonic() - started)  # fmt: skip


def _check_dataset(
    cfg: Config,
    journal: Journal,
    li: _Listing,
    opts: _Options,
    pipeline: _Pipeline,
    count: PairCount,
) -> None:
    ds = li.dataset
    where = _where(cfg, ds)
    pairs = stream_pairs(
        ds.name, ds.source.prefix, ds.target.prefix, li.sources, li.targets,
        _copies(journal, ds.name), encrypt=ds.encrypt,
        header_len=header_length(len(cfg.encryption.recipients)),
        etag_is_md5=li.etag_is_md5, sample=opts.sample, count=count,
    )  # fmt: skip
    for pair in pairs:
        entry = _Entry(pair, _record_of(pair))
        entry.record.findings += quick_findings(pair)
        _schedule(entry, where, opts, pipeline)


def _record_of(pair: Pair) -> ObjectRecord:
    copy = pair.copy if pair.committed else None
    checksums = {}
    if copy and copy.plain_sha256:
        checksums["journal_plain_sha256"] = copy.plain_sha256
    if copy and copy.cipher_sha256 and pair.encrypt:
        checksums["journal_cipher_sha256"] = copy.cipher_sha256
    if pair.source and pair.source.checksums.get("content-md5"):
        checksums["source_content_md5"] = pair.source.checksums["content-md5"]
    return ObjectRecord(
        pair.dataset,
        pair.source_key,
        pair.target_key,
        pair.source.size if pair.source else None,
        pair.target.size if pair.target else None,
        pair.expected_target_size if pair.source else None,
        pair.source.etag if pair.source else None,
        pair.target.etag if pair.target else None,
        checksums,
    )


@dataclass(eq=False)
class _Entry:
    """One object on its way through: its record, and what its reads have returned so far.
    Its findings are completed (`_conclude`) once no read is left: full first, then rows."""

    pair: Pair
    record: ObjectRecord
    waiting: int = 0  # jobs not settled yet
    reads: list[ReadResult] = field(default_factory=list)
    rows: RowsRead | None = None
    full: bool = False  # re-read at --level full


# A job: the task function, its argument (picklable: it may run on a Dask worker), and what
# to do with its result, in this thread.
Job = tuple[Callable[[Any], Any], Any, Callable[[Any], None]]


def _schedule(entry: _Entry, where: _Where, opts: _Options, pipeline: _Pipeline) -> None:
    """Hand the object's reads to the pipeline: one check of a small object (both sides
    read once, with others in one task), else a task per part group and one to count rows."""
    pair = entry.pair
    if pair.source is None or pair.target is None or (opts.level == "quick" and not opts.rows):
        pipeline.add(entry, [])  # nothing to read
        return
    reads: list[ReadTask] = []
    if opts.level == "full":
        entry.full = True
        reads = _read_tasks(where, pair)
        pipeline.progress.add_total(1, sum(_task_bytes(t) for t in reads))
    rows = None
    if opts.rows:
        fmt = detect_format(pair.source_key or "", where.format)
        entry.record.row_format = fmt
        rows = _rows_task(where, pair, fmt) if fmt != "binary" else None
    on_read, on_rows = _on_read(entry, pipeline), _on_rows(entry)
    small = _small_check(pair, reads, rows)
    if small is not None:
        pipeline.add_small(entry, small, partial(_on_small(on_read, on_rows), small))
        return
    jobs: list[Job] = [(read_parts, t, partial(on_read, t)) for t in reads]
    if rows is not None:
        jobs.append((count_object_rows, rows, on_rows))
    pipeline.add(entry, jobs)


def _small_check(pair: Pair, reads: list[ReadTask], rows: RowsTask | None) -> SmallCheck | None:
    """The object's checks as one `SmallCheck`, if it is small: one part, and no side read
    beyond `SMALL_OBJECT_BYTES` of plaintext (plus the age overhead on the target)."""
    assert pair.source is not None and pair.target is not None
    if len(reads) > 1 or (reads and len(reads[0].parts) > 1) or (not reads and rows is None):
        return None
    read = reads[0] if reads else None
    source_bytes = max(read.parts[0].length if read and read.source else 0,
                       pair.source.size if rows else 0)  # fmt: skip
    target_bytes = max(_stored_bytes(read) if read else 0, pair.target.size if rows else 0)
    if source_bytes > SMALL_OBJECT_BYTES or target_bytes > SMALL_OBJECT_BYTES + 64 * 1024:
        return None
    return SmallCheck(read, rows, source_bytes, target_bytes)


def _stored_bytes(task: ReadTask) -> int:
    return sum(
        p.cipher_range(task.header_len).length if task.encrypt else p.length for p in task.parts
    )


def _on_small(
    on_read: Callable[[ReadTask, ReadResult], None], on_rows: Callable[[RowsResult], None]
) -> Callable[[SmallCheck, SmallResult], None]:
    def settle(check: SmallCheck, result: SmallResult) -> None:
        if check.read is not None and result.read is not None:
            on_read(check.read, result.read)
        if result.rows is not None:
            on_rows(result.rows)

    return settle


# -- full ------------------------------------------------------------------------------


def layout(pair: Pair, default_part_size: int) -> tuple[PartRange, ...]:
    """The parts the copy was cut into (the journal's), so composites compare; objects the
    journal does not hold are cut at `default_part_size`."""
    assert pair.source is not None
    if pair.committed:
        assert pair.copy is not None
        size, size_of_part, count = pair.copy.source_size, pair.copy.part_size, pair.copy.parts
    else:
        size, size_of_part = pair.source.size, default_part_size
        count = part_count(size, size_of_part)
    if count == 1:
        return (PartRange(1, 0, size, True),)
    return tuple(
        PartRange(i + 1, i * size_of_part, min(size_of_part, size - i * size_of_part),
                  i == count - 1)
        for i in range(count)
    )  # fmt: skip


def _read_tasks(where: _Where, pair: Pair) -> list[ReadTask]:
    assert pair.source is not None and pair.target_key is not None and pair.source_key
    parts = layout(pair, where.part_size)
    read_source = not (pair.stale and pair.committed)  # changed since: check the target alone
    md5 = read_source and bool(pair.source.checksums.get("content-md5"))
    groups = [parts] if md5 else [(p,) for p in parts]
    return [
        ReadTask(
            where.source if read_source else None, pair.source_key, where.target,
            pair.target_key, pair.encrypt, pair.header_len, group, md5, where.identity_env,
            where.max_attempts,
        )
        for group in groups
    ]  # fmt: skip


def _task_bytes(task: ReadTask) -> int:
    return _stored_bytes(task) + (sum(p.length for p in task.parts) if task.source else 0)


def _on_read(entry: _Entry, pipeline: _Pipeline) -> Callable[[ReadTask, ReadResult], None]:
    def settle(task: ReadTask, result: ReadResult) -> None:
        pipeline.bytes_read += result.bytes_read
        pipeline.progress.advance(_task_bytes(task))
        entry.reads.append(result)

    return settle


def _conclude_full(entry: _Entry) -> None:
    pair, record, results = entry.pair, entry.record, entry.reads
    digests = sorted((d for r in results for d in r.digests), key=lambda d: d.number)

    def comp(values: list[str | None]) -> str | None:
        return composite([v for v in values if v]) if all(values) else None

    read = Reread(
        source_plain=comp([d.source_sha256 for d in digests]),
        target_plain=comp([d.target_sha256 for d in digests]),
        target_cipher=comp([d.target_cipher_sha256 for d in digests]),
        source_md5=next((r.source_md5 for r in results if r.source_md5), None),
        source_error=next((r.source_error for r in results if r.source_error), None),
        target_error=next((r.target_error for r in results if r.target_error), None),
        target_error_kind="undecryptable"
        if any(r.undecryptable for r in results)
        else "unreadable",
    )
    for name, value in (("source_plain_sha256", read.source_plain),
                        ("target_plain_sha256", read.target_plain),
                        ("source_md5", read.source_md5)):  # fmt: skip
        if value:
            record.checksums[name] = value
    if read.target_cipher and pair.encrypt:
        record.checksums["target_cipher_sha256"] = read.target_cipher
    record.findings += full_findings(pair, read)


# -- rows ------------------------------------------------------------------------------


def _rows_task(where: _Where, pair: Pair, fmt: str) -> RowsTask:
    assert pair.source and pair.target and pair.source_key and pair.target_key
    return RowsTask(
        fmt, where.source, pair.source_key, pair.source.size, where.target, pair.target_key,
        pair.target.size, pair.encrypt, where.identity_env, where.max_attempts, where.csv,
    )  # fmt: skip


def _on_rows(entry: _Entry) -> Callable[[RowsResult], None]:
    def settle(result: RowsResult) -> None:
        src, tgt = result.source, result.target
        entry.record.source_rows = src.rows if src else None
        entry.record.target_rows = tgt.rows if tgt else None
        entry.rows = RowsRead(
            entry.record.row_format or "",
            entry.record.source_rows,
            entry.record.target_rows,
            result.source_error or (src.error if src else None),
            result.target_error or (tgt.error if tgt else None),
            "undecryptable" if result.undecryptable else "unreadable",
        )

    return settle


def _conclude(entry: _Entry) -> None:
    if entry.full:
        _conclude_full(entry)
    if entry.rows is not None:
        entry.record.findings += rows_findings(entry.pair, entry.rows)


# -- running tasks, in order, and recording --------------------------------------------


class _Pipeline:
    """Runs the jobs of each object added, at most `limit` in flight, and hands each object's
    record to `emit` in the order the objects were added, once all its jobs have settled.
    Small objects' checks are gathered into one job of up to `SMALL_BATCH_OBJECTS`.

    The first job error stops new submissions; it is raised (by `add` or `finish`) once the
    jobs in flight have settled."""

    def __init__(
        self,
        runner: TaskRunner,
        limit: int,
        emit: Callable[[ObjectRecord], None],
        progress: ThrottledProgress,
    ) -> None:
        self._runner = runner
        self._limit = limit
        self._emit = emit
        self.progress = progress
        self.bytes_read = 0
        self._window: deque[_Entry] = deque()
        self._pending: dict[Future[Any], tuple[list[_Entry], Callable[[Any], None]]] = {}
        self._failure: BaseException | None = None
        self._batch: list[tuple[_Entry, SmallCheck, Callable[[SmallResult], None]]] = []
        self._batch_bytes = 0

    def add(self, entry: _Entry, jobs: list[Job]) -> None:
        if not jobs and not self._window:  # nothing to wait for, nor anything before it
            _conclude(entry)
            self._emit(entry.record)
            return
        entry.waiting = len(jobs)
        self._window.append(entry)
        for fn, task, settle in jobs:
            self._submit(fn, task, [entry], settle)
        self._after_add()

    def add_small(
        self, entry: _Entry, check: SmallCheck, settle: Callable[[SmallResult], None]
    ) -> None:
        entry.waiting = 1
        self._window.append(entry)
        self._batch.append((entry, check, settle))
        self._batch_bytes += check.source_bytes + check.target_bytes
        if len(self._batch) >= SMALL_BATCH_OBJECTS or self._batch_bytes >= SMALL_BATCH_BYTES:
            self._submit_batch()
        self._after_add()

    def finish(self) -> None:
        """Wait for every job, emit every record left; raise the first job error."""
        self._submit_batch()
        while self._pending:
            self._wait()
        self._raise_if_failed()
        self._drain()

    def _submit(
        self,
        fn: Callable[[Any], Any],
        task: Any,
        entries: list[_Entry],
        settle: Callable[[Any], None],
    ) -> None:
        while len(self._pending) >= self._limit:
            self._wait()
        self._raise_if_failed()
        self._pending[self._runner.submit(fn, task)] = (entries, settle)

    def _submit_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        settles = [settle for _, _, settle in batch]

        def settle_all(results: tuple[SmallResult, ...]) -> None:
            for one, result in zip(settles, results, strict=True):
                one(result)

        checks = tuple(check for _, check, _ in batch)
        self._submit(check_small_objects, checks, [e for e, _, _ in batch], settle_all)

    def _after_add(self) -> None:
        self._drain()
        if len(self._window) > WINDOW:
            self._submit_batch()  # the records held may be waiting for it
        while len(self._window) > WINDOW and self._pending:
            self._wait()
            self._drain()
        self._raise_if_failed()

    def _wait(self) -> None:
        done, _ = wait(list(self._pending), return_when=FIRST_COMPLETED)
        for future in done:
            entries, settle = self._pending.pop(future)
            exc = future.exception()
            if exc is not None:
                self._failure = self._failure or exc
                continue
            settle(future.result())
            for entry in entries:
                entry.waiting -= 1
                if entry.waiting == 0 and entry.full:
                    self.progress.object_done(entry.pair.target_key or "")

    def _raise_if_failed(self) -> None:
        if self._failure is None:
            return
        while self._pending:
            self._wait()
        raise self._failure

    def _drain(self) -> None:
        window = self._window
        while window and window[0].waiting == 0:
            entry = window.popleft()
            _conclude(entry)
            self._emit(entry.record)


class _Sink:
    """Where each finished record goes: the report's counters, `on_record`, and the journal
    (one transaction per `VERDICT_BATCH` verdicts)."""

    def __init__(
        self,
        facts: Facts,
        run_id: int,
        report: VerifyReport,
        on_record: Callable[[ObjectRecord], None] | None,
    ) -> None:
        self._facts = facts
        self._run_id = run_id
        self._report = report
        self._on_record = on_record
        self._rows: list[VerdictRow] = []

    def add(self, record: ObjectRecord) -> None:
        self._report.add(record)
        if self._on_record is not None:
            self._on_record(record)
        detail: dict[str, Any] = record.to_dict()
        detail["rows_checked"] = self._report.rows
        self._rows.append(VerdictRow(record.dataset, record.source_key, record.target_key,
                                     record.verdict, detail))  # fmt: skip
        if len(self._rows) >= VERDICT_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self._facts.record_verifications(self._run_id, self._report.level, self._rows)
            self._rows = []

"""`bascule verify` as a library call: `verify(cfg, ...) -> VerifyReport`, free of printing.

Order: arguments and the identity are checked first (ConfigError, exit 2, before anything is
read), then every source and target is listed (ConnectorError, exit 3), and only then is the
journal opened and a ``verify`` run started. Each object's record goes into the journal
(`Facts.record_verification`); the run ends ``completed`` when nothing was found, ``failed``
when something was (or the run stopped on an error), ``interrupted`` on Ctrl-C.

Levels: ``quick`` reads no data; ``full`` re-reads both sides (parts in parallel on the
runner, bounded to 2 x transfer.concurrency tasks in flight, ~2 MiB each); ``rows`` counts
rows on both sides. See `checks.py` for what each compares.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from bascule.age.sizes import header_length
from bascule.config import Config, Dataset, identity_path
from bascule.connectors.base import ObjectInfo
from bascule.errors import UsageError
from bascule.migration.coordinator import NullProgress, ProgressSink
from bascule.migration.journal import Facts, Journal, VerdictRow
from bascule.migration.plan import part_count
from bascule.migration.service import open_journal, source_ref, target_ref
from bascule.migration.tasks import composite
from bascule.runners import TaskRunner, ThreadRunner
from bascule.verification.checks import (
    Copy,
    Pair,
    Reread,
    RowsRead,
    full_findings,
    pair_objects,
    quick_findings,
    rows_findings,
)
from bascule.verification.counts import detect_format
from bascule.verification.evidence import ObjectRecord, SampleInfo, VerifyReport
from bascule.verification.reread import (
    PartRange,
    ReadResult,
    ReadTask,
    RowsResult,
    RowsTask,
    count_object_rows,
    read_parts,
)

Level = Literal["quick", "full"]
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Listing:
    dataset: Dataset
    sources: list[ObjectInfo]
    targets: list[ObjectInfo]
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
) -> VerifyReport:
    """Verify the copies of `dataset` (default: every dataset) and return the evidence.

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
        return _run(cfg, journal, listings, level, rows, sample, runner, progress)
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


def _list(cfg: Config, ds: Dataset) -> _Listing:
    from bascule.endpoints import connector

    src = connector(source_ref(cfg, ds))
    tgt = connector(target_ref(cfg, ds))
    sources = list(src.list(ds.source.prefix))
    targets = list(tgt.list(ds.target.prefix))
    return _Listing(ds, sources, targets, tgt.url.startswith("s3://"))


def _copies(journal: Journal, dataset: str) -> dict[str, Copy]:
    """The journal's record of each target key of `dataset`."""
    return {
        r[0]: Copy(r[1], r[2], r[3], r[4], r[5], r[6] in ("committed", "verified"), r[7], r[8],
                   r[9] or None, tuple(r[10].split(",")) if r[10] else ())
        for r in journal.copy_rows(dataset)
    }  # fmt: skip


@dataclass
class _Context:
    cfg: Config
    level: Level
    rows: bool
    runner: TaskRunner
    progress: ProgressSink
    records: list[ObjectRecord] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # dataset -> declared format
    bytes_read: int = 0


def _run(
    cfg: Config,
    journal: Journal,
    listings: list[_Listing],
    level: Level,
    rows: bool,
    sample: float | None,
    runner: TaskRunner | None,
    progress: ProgressSink | None,
) -> VerifyReport:
    run_id = journal.start_run(
        "verify", {"datasets": [li.dataset.name for li in listings], "level": level,
                   "rows": rows, "sample": sample}
    )  # fmt: skip
    started = time.monotonic()
    own = runner is None
    ctx = _Context(cfg, level, rows, runner or ThreadRunner(cfg.transfer.concurrency, "verify"),
                   progress or NullProgress())  # fmt: skip
    status = "failed"
    report: VerifyReport | None = None
    try:
        info = _pair_all(ctx, journal, listings, sample)
        _check_all(ctx)
        report = VerifyReport(level, rows, ctx.records, info, run_id, bytes_read=ctx.bytes_read)
        report.seconds = time.monotonic() - started
        _record_facts(Facts(journal), run_id, report)
        status = "completed" if report.ok else "failed"
        return report
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if own:
            ctx.runner.shutdown()
        nbytes = report.bytes_read if report else ctx.bytes_read
        nobjects = len(report.records) if report else 0
        journal.end_run(run_id, status, nbytes, nobjects, time.monotonic() - started)


def _pair_all(
    ctx: _Context, journal: Journal, listings: list[_Listing], sample: float | None
) -> SampleInfo | None:
    default_hlen = header_length(len(ctx.cfg.encryption.recipients))
    kept = total = 0
    for li in listings:
        ds = li.dataset
        pairs, info = pair_objects(
            ds.name, ds.source.prefix, ds.target.prefix, li.sources, li.targets,
            _copies(journal, ds.name), encrypt=ds.encrypt, header_len=default_hlen,
            etag_is_md5=li.etag_is_md5, sample=sample,
        )  # fmt: skip
        ctx.pairs += pairs
        ctx.formats[ds.name] = ds.format
        kept += info.objects_in_sample if info else len(pairs)
        total += info.objects_total if info else len(pairs)
    return SampleInfo(sample, kept, total) if sample is not None else None


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


def _check_all(ctx: _Context) -> None:
    ctx.records = [_record_of(p) for p in ctx.pairs]
    for pair, record in zip(ctx.pairs, ctx.records, strict=True):
        record.findings += quick_findings(pair)
    both = [i for i, p in enumerate(ctx.pairs) if p.source is not None and p.target is not None]
    if ctx.level == "full":
        _reread_all(ctx, both)
    if ctx.rows:
        _count_all(ctx, both)


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


def _read_tasks(ctx: _Context, pair: Pair) -> list[ReadTask]:
    assert pair.source is not None and pair.target_key is not None and pair.source_key
    ds = ctx.cfg.dataset(pair.dataset)
    parts = layout(pair, ctx.cfg.transfer.part_size)
    read_source = not (pair.stale and pair.committed)  # changed since: check the target alone
    md5 = read_source and bool(pair.source.checksums.get("content-md5"))
    groups = [parts] if md5 else [(p,) for p in parts]
    return [
        ReadTask(
            source_ref(ctx.cfg, ds) if read_source else None, pair.source_key,
            target_ref(ctx.cfg, ds), pair.target_key, pair.encrypt, pair.header_len, group,
            md5, ctx.cfg.encryption.identity_file_env, ctx.cfg.transfer.max_attempts,
        )
        for group in groups
    ]  # fmt: skip


def _task_bytes(task: ReadTask) -> int:
    stored = sum(
        p.cipher_range(task.header_len).length if task.encrypt else p.length for p in task.parts
    )
    return stored + (sum(p.length for p in task.parts) if task.source else 0)


def _reread_all(ctx: _Context, indexes: list[int]) -> None:
    plans = {i: _read_tasks(ctx, ctx.pairs[i]) for i in indexes}
    ctx.progress.add_total(len(plans), sum(_task_bytes(t) for ts in plans.values() for t in ts))
    results: dict[int, list[ReadResult]] = {i: [] for i in plans}

    def settle(item: tuple[int, ReadTask], result: ReadResult) -> None:
        index, task = item
        ctx.bytes_read += result.bytes_read
        ctx.progress.advance(_task_bytes(task))
        results[index].append(result)
        if len(results[index]) == len(plans[index]):
            _conclude_full(ctx, index, results[index])
            ctx.progress.object_done(ctx.pairs[index].target_key or "")

    work = ((i, t) for i, ts in plans.items() for t in ts)
    _run_tasks(ctx, read_parts, work, settle)


def _conclude_full(ctx: _Context, index: int, results: list[ReadResult]) -> None:
    pair, record = ctx.pairs[index], ctx.records[index]
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


def _rows_task(ctx: _Context, pair: Pair, fmt: str) -> RowsTask:
    assert pair.source and pair.target and pair.source_key and pair.target_key
    ds = ctx.cfg.dataset(pair.dataset)
    return RowsTask(
        fmt, source_ref(ctx.cfg, ds), pair.source_key, pair.source.size, target_ref(ctx.cfg, ds),
        pair.target_key, pair.target.size, pair.encrypt, ctx.cfg.encryption.identity_file_env,
    )  # fmt: skip


def _count_all(ctx: _Context, indexes: list[int]) -> None:
    work = []
    for i in indexes:
        pair = ctx.pairs[i]
        fmt = detect_format(pair.source_key or "", ctx.formats[pair.dataset])
        ctx.records[i].row_format = fmt
        if fmt != "binary":
            work.append((i, _rows_task(ctx, pair, fmt)))

    def settle(item: tuple[int, RowsTask], result: RowsResult) -> None:
        index, task = item
        record = ctx.records[index]
        src, tgt = result.source, result.target
        record.source_rows = src.rows if src else None
        record.target_rows = tgt.rows if tgt else None
        rows = RowsRead(
            task.format,
            record.source_rows,
            record.target_rows,
            result.source_error or (src.error if src else None),
            result.target_error or (tgt.error if tgt else None),
            "undecryptable" if result.undecryptable else "unreadable",
        )
        record.findings += rows_findings(ctx.pairs[index], rows)

    _run_tasks(ctx, count_object_rows, iter(work), settle)


# -- running tasks and recording -------------------------------------------------------


def _run_tasks(
    ctx: _Context,
    fn: Callable[[T], R],
    work: Iterator[tuple[int, T]] | Iterable[tuple[int, T]],
    settle: Callable[[tuple[int, T], R], None],
) -> None:
    """Run `fn` on every task of `work` with at most 2 x concurrency in flight; `settle`
    runs in this thread. The first task error propagates once the others have settled."""
    limit = max(1, 2 * ctx.cfg.transfer.concurrency)
    pending: dict[Future[R], tuple[int, T]] = {}
    failure: BaseException | None = None
    items = iter(work)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and failure is None and len(pending) < limit:
            item = next(items, None)
            if item is None:
                exhausted = True
                break
            pending[ctx.runner.submit(fn, item[1])] = item
        if failure is not None:
            exhausted = True
        if not pending:
            break
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            item = pending.pop(future)
            exc = future.exception()
            if exc is not None:
                failure = failure or exc
                continue
            settle(item, future.result())
    if failure is not None:
        raise failure


def _record_facts(facts: Facts, run_id: int, report: VerifyReport) -> None:
    def rows() -> Iterator[VerdictRow]:
        for record in report.records:
            detail: dict[str, Any] = record.to_dict()
            detail["rows_checked"] = report.rows
            yield VerdictRow(record.dataset, record.source_key, record.target_key,
                             record.verdict, detail)  # fmt: skip

    facts.record_verifications(run_id, report.level, rows())

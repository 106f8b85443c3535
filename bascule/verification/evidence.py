"""What `bascule verify` found, as evidence an auditor can read: one record per object.

A record holds both sides' values (keys, sizes, etags, checksums, row counts), the findings
on that object, the time and the bascule version. Its verdict is ``verified`` when nothing was
found, else the kind of its first finding. Records are streamed, never collected: each goes
into the journal (`Facts.record_verifications`, in batches) and, with `--report FILE`, to the
file (`ReportWriter`); `VerifyReport` keeps the counters and the first findings.

Finding kinds: ``missing`` (on the target), ``extra`` (on the target, mapped from no source
key), ``size-mismatch``, ``checksum-mismatch``, ``rows-mismatch``, ``unreadable`` (a side
cannot be read, or its content does not parse as its format), ``undecryptable`` (the target
fails age authentication), ``stale`` (the source changed since the copy, or was never copied).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from bascule import __version__

Kind = Literal[
    "missing",
    "extra",
    "size-mismatch",
    "checksum-mismatch",
    "rows-mismatch",
    "unreadable",
    "undecryptable",
    "stale",
]
KINDS: tuple[Kind, ...] = (
    "missing",
    "extra",
    "size-mismatch",
    "checksum-mismatch",
    "rows-mismatch",
    "unreadable",
    "undecryptable",
    "stale",
)
VERIFIED = "verified"
Value = str | int | None


@dataclass(frozen=True)
class Finding:
    """One problem on one object. `what` names the compared quantity (``size``, ``etag``,
    ``plaintext sha256 composite``, ``rows``...); the values are each side's, None when that
    side has none. `message` is one line a person can act on."""

    kind: Kind
    dataset: str
    source_key: str | None
    target_key: str | None
    what: str
    source_value: Value
    target_value: Value
    message: str


_clock: tuple[int, str] = (0, "")


def utc_now() -> str:
    """The time to the second, ISO 8601 in UTC (formatted once per second: verify stamps
    every record, a million of them a run)."""
    global _clock
    second = int(time.time())
    if _clock[0] != second:
        _clock = (second, datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds"))
    return _clock[1]


@dataclass
class ObjectRecord:
    """Everything verify learnt of one object. Checksums are keyed by what they are, e.g.
    ``source_plain_sha256`` (read now), ``journal_plain_sha256`` (recorded at the copy)."""

    dataset: str
    source_key: str | None
    target_key: str | None
    source_size: int | None = None
    target_size: int | None = None
    expected_target_size: int | None = None
    source_etag: str | None = None
    target_etag: str | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    row_format: str | None = None
    source_rows: int | None = None
    target_rows: int | None = None
    findings: list[Finding] = field(default_factory=list)
    time: str = field(default_factory=utc_now)

    @property
    def verdict(self) -> str:
        return self.findings[0].kind if self.findings else VERIFIED

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (the fields of `asdict`, by hand: verify writes
        one per object, and `asdict`'s deep copy dominated a run of a million)."""
        return {
            "dataset": self.dataset, "source_key": self.source_key,
            "target_key": self.target_key, "source_size": self.source_size,
            "target_size": self.target_size, "expected_target_size": self.expected_target_size,
            "source_etag": self.source_etag, "target_etag": self.target_etag,
            "checksums": dict(self.checksums), "row_format": self.row_format,
            "source_rows": self.source_rows, "target_rows": self.target_rows,
            "findings": [_finding_dict(f) for f in self.findings], "time": self.time,
            "verdict": self.verdict, "bascule_version": __version__,
        }  # fmt: skip


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {"kind": f.kind, "dataset": f.dataset, "source_key": f.source_key,
            "target_key": f.target_key, "what": f.what, "source_value": f.source_value,
            "target_value": f.target_value, "message": f.message}  # fmt: skip


@dataclass(frozen=True)
class SampleInfo:
    """`--sample P`: which share of the objects was checked, out of how many."""

    percent: float
    objects_in_sample: int
    objects_total: int


FIRST_FINDINGS = 50  # findings a report keeps in memory; the --report file has them all


@dataclass
class DatasetCounts:
    """One dataset's records in a verify run: how many, how many verified (and their source
    bytes), and per finding kind how many objects have at least one finding of it."""

    objects: int = 0
    verified: int = 0
    verified_bytes: int = 0
    findings: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"objects": self.objects, "verified": self.verified,
                "findings": dict(self.findings)}  # fmt: skip


@dataclass
class VerifyReport:
    """The outcome of one verify run, as counters: records are counted in (`add`) as they are
    made and not kept, so memory does not grow with the object count. The first
    `FIRST_FINDINGS` findings are kept whole; every record goes to the journal and, with
    `--report FILE`, to the file (`ReportWriter`). `ok` is true when no record has a finding."""

    level: str
    rows: bool
    datasets: dict[str, DatasetCounts] = field(default_factory=dict)
    first_findings: list[Finding] = field(default_factory=list)
    finding_count: int = 0
    sample: SampleInfo | None = None
    run_id: int | None = None
    started: str = field(default_factory=utc_now)
    seconds: float = 0.0
    bytes_read: int = 0

    def add(self, record: ObjectRecord) -> None:
        """Count `record` in (its dataset, its verdict, its findings)."""
        counts = self.datasets.get(record.dataset)
        if counts is None:
            counts = self.datasets[record.dataset] = DatasetCounts()
        counts.objects += 1
        if not record.findings:
            counts.verified += 1
            counts.verified_bytes += record.source_size or 0
            return
        for kind in sorted({f.kind for f in record.findings}):
            counts.findings[kind] = counts.findings.get(kind, 0) + 1
        self.finding_count += len(record.findings)
        room = FIRST_FINDINGS - len(self.first_findings)
        if room > 0:
            self.first_findings += record.findings[:room]

    @property
    def objects(self) -> int:
        return sum(d.objects for d in self.datasets.values())

    @property
    def verified(self) -> int:
        return sum(d.verified for d in self.datasets.values())

    @property
    def ok(self) -> bool:
        return self.finding_count == 0

    @property
    def summary(self) -> dict[str, Any]:
        """Totals overall and per dataset: objects, verified, and objects per finding kind."""
        kinds: Counter[str] = Counter()
        for d in self.datasets.values():
            kinds.update(d.findings)
        return {
            "level": self.level,
            "rows": self.rows,
            "ok": self.ok,
            "objects": self.objects,
            "verified": self.verified,
            "findings": dict(sorted(kinds.items())),
            "datasets": {name: d.to_dict() for name, d in self.datasets.items()},
            "sample": asdict(self.sample) if self.sample else None,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 3),
            "started": self.started,
            "run_id": self.run_id,
            "bascule_version": __version__,
        }


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


# The `--report FILE` document is ``{"summary": {...}, "records": [...]}`` exactly as
# ``json.dumps(document, indent=2, ensure_ascii=False)`` writes it; these pieces make the same
# bytes one record at a time (a record's own lines indented to its depth in the document).
def _head(summary: Mapping[str, Any]) -> str:
    return '{\n  "summary": ' + _dumps(summary).replace("\n", "\n  ") + ',\n  "records": ['


def _record_piece(record: ObjectRecord, first: bool) -> str:
    return ("\n    " if first else ",\n    ") + _dumps(record.to_dict()).replace("\n", "\n    ")


def _tail(empty: bool) -> str:
    return "]\n}" if empty else "\n  ]\n}"


def render_report(summary: Mapping[str, Any], records: Iterable[ObjectRecord]) -> str:
    """The `--report FILE` document of `records` held in memory (tests, small runs)."""
    pieces = [_record_piece(r, i == 0) for i, r in enumerate(records)]
    return _head(summary) + "".join(pieces) + _tail(not pieces)


class ReportWriter:
    """Writes the `--report FILE` document as records come, holding none of them: each record
    is appended to a spool file beside `path`; `finish(summary)` then writes the document
    (summary first) to a temporary file renamed over `path`. Until then `path` is untouched,
    and `discard` (or leaving the `with` block on an error) leaves nothing behind: never a
    half-written report."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._spool: IO[str] | None = tempfile.TemporaryFile(  # noqa: SIM115 (closed below)
            "w+", encoding="utf-8", dir=path.parent
        )
        self._empty = True

    def add(self, record: ObjectRecord) -> None:
        assert self._spool is not None, "the report is already finished"
        self._spool.write(_record_piece(record, self._empty))
        self._empty = False

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Write the document and a final newline to `path`, atomically (a rename)."""
        assert self._spool is not None, "the report is already finished"
        spool, self._spool = self._spool, None
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            spool.seek(0)
            with tmp.open("w", encoding="utf-8") as out:
                out.write(_head(summary))
                shutil.copyfileobj(spool, out, 1 << 20)
                out.write(_tail(self._empty) + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            spool.close()

    def discard(self) -> None:
        """Drop what was spooled; `path` is left as it was."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

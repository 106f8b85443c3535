"""What `bascule verify` found, as evidence an auditor can read: one record per object.

A record holds both sides' values (keys, sizes, etags, checksums, row counts), the findings
on that object, the time and the bascule version. Its verdict is ``verified`` when nothing was
found, else the kind of its first finding. `VerifyReport.to_json` is the `--report FILE`
document; the same records go into the journal (`Facts.record_verification`).

Finding kinds: ``missing`` (on the target), ``extra`` (on the target, mapped from no source
key), ``size-mismatch``, ``checksum-mismatch``, ``rows-mismatch``, ``unreadable`` (a side
cannot be read, or its content does not parse as its format), ``undecryptable`` (the target
fails age authentication), ``stale`` (the source changed since the copy, or was never copied).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

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


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


@dataclass
class VerifyReport:
    """The outcome of one verify run. `ok` is true when no record has a finding."""

    level: str
    rows: bool
    records: list[ObjectRecord]
    sample: SampleInfo | None = None
    run_id: int | None = None
    started: str = field(default_factory=utc_now)
    seconds: float = 0.0
    bytes_read: int = 0

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.records for f in r.findings]

    @property
    def ok(self) -> bool:
        return not any(r.findings for r in self.records)

    @property
    def summary(self) -> dict[str, Any]:
        """Totals overall and per dataset: objects, verified, and objects per finding kind."""
        per: dict[str, dict[str, Any]] = {}
        for record in self.records:
            row = per.setdefault(record.dataset, {"objects": 0, "verified": 0, "findings": {}})
            row["objects"] += 1
            row["verified"] += not record.findings
            for kind in sorted({f.kind for f in record.findings}):
                row["findings"][kind] = row["findings"].get(kind, 0) + 1
        kinds: Counter[str] = Counter()
        for d in per.values():
            kinds.update(d["findings"])
        return {
            "level": self.level,
            "rows": self.rows,
            "ok": self.ok,
            "objects": len(self.records),
            "verified": sum(not r.findings for r in self.records),
            "findings": dict(sorted(kinds.items())),
            "datasets": per,
            "sample": asdict(self.sample) if self.sample else None,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 3),
            "started": self.started,
            "run_id": self.run_id,
            "bascule_version": __version__,
        }

    def to_json(self) -> str:
        """The evidence document: ``{"summary": {...}, "records": [...]}``."""
        return json.dumps(
            {"summary": self.summary, "records": [r.to_dict() for r in self.records]},
            indent=2,
            ensure_ascii=False,
        )

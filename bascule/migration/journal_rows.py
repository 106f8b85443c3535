"""The journal's rows as they leave it: frozen, typed records (no dict crosses the journal's
boundary). `detail` holds what a command or step recorded, read-only; the fields other
packages read are typed properties here, so their key names live in one place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple


class ObjectRow(NamedTuple):
    """One object's row. A named tuple, as `PartRow` and `CommittedRow`: the coordinator
    makes one or two of each per small object, at a third of a frozen dataclass's cost."""

    id: int
    dataset: str
    source_key: str
    target_key: str
    source_etag: str
    source_size: int
    target_size: int
    encrypt: bool
    part_size: int
    parts: int
    state: str  # in_progress | committed
    generation: int
    header: bytes | None
    nonce: bytes | None
    wrapped_key: bytes | None
    resume_token: str | None
    plain_sha256: str | None
    cipher_sha256: str | None
    target_etag: str | None = None


class CommittedRow(NamedTuple):
    """An object written in one request, already committed on the target, as
    `Journal.record_committed` takes it (a tuple: a batch of them is one statement)."""

    dataset: str
    source_key: str
    target_key: str
    source_etag: str
    source_size: int
    target_size: int
    encrypt: int
    part_size: int
    parts: int
    generation: int
    plain_sha256: str
    cipher_sha256: str
    target_etag: str
    run_id: int


class PartRow(NamedTuple):
    number: int
    size: int
    cipher_size: int
    plain_sha256: str
    cipher_sha256: str
    etag: str


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class RunRow:
    """One invocation (`command`: migrate, verify, rehearse, execute, rollback).

    `status`: running | completed | failed | interrupted | rolled_back | rollback_failed
    (those of a runbook run) or the migrate/verify statuses. `ended` and `seconds` are None
    while it runs. `detail`: what the command recorded at its start."""

    id: int
    command: str
    started: float
    ended: float | None
    status: str
    bytes: int
    objects: int
    seconds: float | None
    detail: Mapping[str, Any]

    @property
    def runbook(self) -> str:
        """The runbook's name (runbook runs), else ""."""
        return _text(self.detail.get("runbook"))

    @property
    def runbook_sha256(self) -> str | None:
        """The digest of the runbook's content (runbook runs), else None."""
        value = self.detail.get("runbook_sha256")
        return None if value is None else str(value)

    @property
    def rehearsal_id(self) -> str:
        """A rehearsal's id (unique across journals); `r<run id>` for older journals."""
        return _text(self.detail.get("rehearsal_id")) or f"r{self.id}"

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets the run covered (runbook and verify runs), else ()."""
        return tuple(str(d) for d in self.detail.get("datasets") or ())


@dataclass(frozen=True, slots=True)
class VerifyTally:
    """What one verify step found for one dataset."""

    objects: int
    verified: int
    findings: int
    bytes: int
    level: str  # quick | full
    rows: bool  # row counts compared


@dataclass(frozen=True, slots=True)
class StepRow:
    """One runbook step of a run. `outcome`: running | passed | failed | warned | skipped |
    interrupted. `ended` is None while it runs; `detail` is what the step reported."""

    id: int
    run_id: int
    runbook: str
    mode: str
    phase: str
    step: str
    kind: str
    started: float
    ended: float | None
    outcome: str
    detail: Mapping[str, Any]

    @property
    def seconds(self) -> float:
        """The step's measured duration (0.0 while it runs)."""
        return float(self.detail.get("seconds", 0.0))

    @property
    def message(self) -> str:
        return _text(self.detail.get("message"))

    @property
    def copied_bytes(self) -> int:
        """Bytes a copy step sent (0 for other kinds)."""
        return int(self.detail.get("bytes", 0)) if self.kind == "copy" else 0

    @property
    def copied_objects(self) -> int:
        """Objects a copy step committed (0 for other kinds)."""
        return int(self.detail.get("objects", 0)) if self.kind == "copy" else 0

    @property
    def findings(self) -> int:
        """Verification findings of a verify step (0 for other kinds)."""
        return int(self.detail.get("findings") or 0) if self.kind == "verify" else 0

    @property
    def datasets_failed(self) -> tuple[str, ...]:
        """The datasets a failure is about (() when it is about none in particular)."""
        return tuple(str(d) for d in self.detail.get("datasets_failed") or ())

    @property
    def verified(self) -> dict[str, VerifyTally]:
        """Per dataset, what a verify step found ({} for other kinds)."""
        if self.kind != "verify":
            return {}
        return {name: _tally(d) for name, d in (self.detail.get("datasets") or {}).items()}

    @property
    def snapshot(self) -> dict[str, dict[str, tuple[str, int]]]:
        """Per dataset, the source inventory (key -> (etag, size)) a freeze step took."""
        raw = self.detail.get("snapshot") or {}
        return {
            name: {key: (str(etag), int(size)) for key, (etag, size) in keys.items()}
            for name, keys in raw.items()
        }


def _tally(d: Mapping[str, Any]) -> VerifyTally:
    return VerifyTally(
        int(d.get("objects", 0)), int(d.get("verified", 0)), int(d.get("findings", 0)),
        int(d.get("bytes", 0)), _text(d.get("level")), bool(d.get("rows")),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class VerificationRow:
    """The verdict of one object (or dataset-level check) in a verify run. `detail`: the
    checksums and counts behind it."""

    run_id: int
    ts: float
    dataset: str
    source_key: str | None
    target_key: str | None
    level: str
    verdict: str
    detail: Mapping[str, Any]


class VerdictRow(NamedTuple):
    """One verdict to append (`Facts.record_verifications`)."""

    dataset: str
    source_key: str | None
    target_key: str | None
    verdict: str
    detail: Mapping[str, Any]


def _detail(text: str) -> Mapping[str, Any]:
    return MappingProxyType(json.loads(text))


@dataclass(frozen=True)
class UploadRow:
    """An upload this journal opened on a target (see `Uploads`). `resume_token` is None
    while the open request has not answered (a crash then leaves it None)."""

    id: int
    dataset: str
    target_key: str
    resume_token: str | None
    run_id: int | None
    opening: float  # when the open request was about to be sent (local clock)
    opened: float | None
    present: tuple[str, ...]  # tokens of the key's unfinished uploads just before opening

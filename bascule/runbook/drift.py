"""The freeze snapshot and the drift gate, streamed: memory does not grow with the objects.

`take_snapshot` writes a dataset's source listing into the journal's snapshot table as it
arrives (`Snapshots.write`, batched). `drift` compares that snapshot with a fresh listing as a
merge of two key-ordered streams: every object is new, changed (etag or size) or deleted, each
counted, the first `NAMED` of a dataset named.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from bascule.config import Config, Dataset
from bascule.connectors.base import ObjectInfo
from bascule.endpoints import connector
from bascule.migration.journal import Journal, StepRow
from bascule.migration.merge import merge_sorted
from bascule.migration.service import source_ref
from bascule.migration.snapshots import Entry, Snapshots, frozen_datasets

NAMED = 20  # drifted objects named per dataset; all of them are counted
KINDS = ("new", "changed", "deleted")


@dataclass
class Drift:
    """How one dataset's source differs from its snapshot."""

    dataset: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    named: list[str] = field(default_factory=list)  # "new KEY", "changed KEY", "deleted KEY"
    objects: int = 0  # listed now
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def note(self, kind: str, key: str) -> None:
        self.counts[kind] += 1
        if len(self.named) < NAMED:
            self.named.append(f"{kind} {key}")

    def summary(self) -> str:
        """'2 new, 1 changed, 0 deleted'."""
        return ", ".join(f"{self.counts[k]} {k}" for k in KINDS)


def _listing(cfg: Config, ds: Dataset) -> Iterable[ObjectInfo]:
    return connector(source_ref(cfg, ds)).list(ds.source.prefix)


def take_snapshot(journal: Journal, run_id: int, step: str, cfg: Config, ds: Dataset) -> int:
    """Record the source inventory of `ds` for the freeze step `step`; the object count."""
    entries = (Entry(o.key, o.etag, o.size) for o in _listing(cfg, ds))
    return Snapshots(journal).write(run_id, step, ds.name, entries)


def compare(dataset: str, before: Iterable[Entry], now: Iterable[ObjectInfo]) -> Drift:
    """The drift of a fresh listing `now` from the snapshot `before` (both in key order)."""
    found = Drift(dataset)
    started = time.monotonic()
    merged = merge_sorted(
        before, now, lambda e: e.key, lambda o: o.key,
        what=(f"the freeze snapshot of {dataset}", f"the source listing of {dataset}"),
    )  # fmt: skip
    for key, old, new in merged:
        if new is not None:
            found.objects += 1
        if old is None:
            found.note("new", key)
        elif new is None:
            found.note("deleted", key)
        elif (old.etag, old.size) != (new.etag, new.size):
            found.note("changed", key)
    found.seconds = time.monotonic() - started
    return found


def drift(journal: Journal, cfg: Config, freeze: StepRow) -> list[Drift]:
    """Per dataset the freeze step covered, its drift since. ConfigError when one of them
    is no longer in the config."""
    snapshots = Snapshots(journal)
    return [
        compare(name, snapshots.read(freeze, name), _listing(cfg, cfg.dataset(name)))
        for name in frozen_datasets(freeze)
    ]

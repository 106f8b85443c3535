"""Freeze snapshots: a source inventory (key, etag, size) per dataset, in its own table.

A freeze step writes one snapshot per dataset, keyed by (run, step name, dataset), from a
streamed listing in batched transactions; the drift gate reads it back in key order, one row
at a time, so neither side holds the inventory in memory. The table is clustered on its key
(``WITHOUT ROWID``), so reading a snapshot in key order is a range scan, not a sort.

Journals written before this table existed kept the snapshot as JSON in the freeze step's
detail (`StepRow.snapshot`); `Snapshots.read` falls back to it, sorted by key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import NamedTuple

from bascule.migration.journal import Journal, StepRow

BATCH = 10_000


class Entry(NamedTuple):
    """One object of a snapshot, as the source listed it."""

    key: str
    etag: str
    size: int


class Snapshots:
    """Write and read freeze snapshots of one journal (the writer's connection)."""

    def __init__(self, journal: Journal) -> None:
        self._j = journal

    def write(self, run_id: int, step: str, dataset: str, entries: Iterable[Entry]) -> int:
        """Replace the snapshot of (`run_id`, `step`, `dataset`) with `entries`, committed
        in batches of `BATCH` rows; returns the number of entries. A freeze that stops
        midway leaves a partial snapshot that its step never marked passed, and a re-run
        replaces it."""
        with self._j.transaction() as db:
            db.execute(
                "DELETE FROM snapshots WHERE run_id=? AND step=? AND dataset=?",
                (run_id, step, dataset),
            )
        count = 0
        items = iter(entries)
        while batch := list(islice(items, BATCH)):
            with self._j.transaction() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                    ((run_id, step, dataset, e.key, e.etag, e.size) for e in batch),
                )
            count += len(batch)
        return count

    def stored(self, run_id: int, step: str, dataset: str) -> Iterator[Entry]:
        """The table's snapshot of (`run_id`, `step`, `dataset`), in key order, streamed."""
        cursor = self._j._db.execute(
            "SELECT key, etag, size FROM snapshots WHERE run_id=? AND step=? AND dataset=? "
            "ORDER BY key",
            (run_id, step, dataset),
        )
        cursor.arraysize = 1000
        while rows := cursor.fetchmany():
            yield from (Entry(k, e, int(s)) for k, e, s in rows)

    def read(self, freeze: StepRow, dataset: str) -> Iterator[Entry]:
        """The snapshot a freeze step took of `dataset`, in key order: from the table, or
        from the step's JSON detail in a journal written before the table existed."""
        legacy = freeze.detail.get("snapshot")
        if legacy is not None:
            keys = freeze.snapshot.get(dataset, {})
            return (Entry(k, etag, size) for k, (etag, size) in sorted(keys.items()))
        return self.stored(freeze.run_id, freeze.step, dataset)


def frozen_datasets(freeze: StepRow) -> tuple[str, ...]:
    """The datasets a freeze step took a snapshot of (either form)."""
    legacy = freeze.detail.get("snapshot")
    if legacy is not None:
        return tuple(legacy)
    return tuple(str(d) for d in freeze.detail.get("datasets") or ())

"""The objects of a plan kept between the counting pass and the run.

`migrate` reads the whole plan once before it writes anything (blocked keys refuse the run,
the totals feed the progress bar). Listing and planning again for the run cost as much once
more (both listings, every key checked), so the counting pass keeps the objects it plans
here and the run reads them back, unless the journal changed in between (then the run plans
again, against what the journal now holds).

A plan of at most `MEMORY_PARTS` parts in all (about 25 MiB: 50,000 small objects) stays in
memory: writing it out and reading it back cost the coordinator about 8 us per object
(20,000 tiny files: 1.2 % of the command's CPU, ten alternating pairs). A larger one goes
to a file, batch by batch from then on: the file is anonymous (`tempfile.TemporaryFile`,
mode 0600, already unlinked: nothing stays behind, even after a kill) and holds pickles
this process wrote and reads back, never anyone else's. Memory then: one batch of `BATCH`
objects at a time.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bascule.migration.plan import ObjectPlan

BATCH = 1000
MEMORY_PARTS = 50_000


class PlanSpool:
    """Append ObjectPlans, then read them back once, in order."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._file: IO[bytes] | None = None  # made once the plan outgrows MEMORY_PARTS
        self._held: list[ObjectPlan] = []  # in memory: the whole plan, or the next batch
        self._parts = 0
        self.objects = 0

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def add(self, item: ObjectPlan) -> None:
        self._held.append(item)
        self.objects += 1
        if self._file is None:
            self._parts += len(item.parts)
            if self._parts <= MEMORY_PARTS:
                return
            # closed by replay() or close(): it outlives this call
            self._file = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115
        if len(self._held) >= BATCH:
            self._spill()

    def _spill(self) -> None:
        if self._held and self._file is not None:
            pickle.dump(self._held, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._held = []

    def replay(self) -> Iterator[ObjectPlan]:
        """Every object added, in order (the spool is read once, then closed)."""
        try:
            if self._file is None:
                held, self._held = self._held, []
                yield from held
                return
            self._spill()
            self._file.seek(0)
            while True:
                try:
                    batch: list[ObjectPlan] = pickle.load(self._file)
                except EOFError:
                    return
                yield from batch
        finally:
            self.close()

    def close(self) -> None:
        self._held = []
        if self._file is not None:
            self._file.close()

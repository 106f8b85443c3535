"""The objects of a plan kept on disk between the counting pass and the run.

`migrate` reads the whole plan once before it writes anything (blocked keys refuse the run,
the totals feed the progress bar). Listing and planning again for the run cost as much once
more (both listings, every key checked), so the counting pass writes the objects it plans
here and the run reads them back, unless the journal changed in between (then the run plans
again, against what the journal now holds).

The file is anonymous (`tempfile.TemporaryFile`, mode 0600, already unlinked: nothing stays
behind, even after a kill) and holds pickles this process wrote and reads back, never
anyone else's. Memory: one batch of `BATCH` objects at a time.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bascule.migration.plan import ObjectPlan

BATCH = 1000


class PlanSpool:
    """Append ObjectPlans, then read them back once, in order."""

    def __init__(self, directory: Path | None = None) -> None:
        # closed by replay() or close(): it outlives this call
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        self._batch: list[ObjectPlan] = []
        self.objects = 0

    def add(self, item: ObjectPlan) -> None:
        self._batch.append(item)
        self.objects += 1
        if len(self._batch) >= BATCH:
            self._spill()

    def _spill(self) -> None:
        if self._batch:
            pickle.dump(self._batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._batch = []

    def replay(self) -> Iterator[ObjectPlan]:
        """Every object added, in order (the spool is read once, then closed)."""
        self._spill()
        self._file.seek(0)
        try:
            while True:
                try:
                    batch: list[ObjectPlan] = pickle.load(self._file)
                except EOFError:
                    return
                yield from batch
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()

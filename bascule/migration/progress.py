"""Where a long command reports how far it is: a `ProgressSink` (the CLI draws it as a bar).

Counts reach a sink as totals (`add_total`: objects and bytes that the work holds, known
as the plan is read) and as work done (`advance`, `object_done`). A command that counts
per object hands its counts through `ThrottledProgress`, so that a million objects do not
cost a million bar updates.
"""

from __future__ import annotations

import time
from typing import Protocol

PROGRESS_EVERY_S = 0.1  # how often a ThrottledProgress hands its counts to its sink


class ProgressSink(Protocol):
    def add_total(self, objects: int, nbytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def object_done(self, key: str) -> None: ...


class NullProgress:
    def add_total(self, objects: int, nbytes: int) -> None:
        return None

    def advance(self, nbytes: int) -> None:
        return None

    def object_done(self, key: str) -> None:
        return None


class ThrottledProgress:
    """A ProgressSink that hands its counts on at most every `every_s` seconds, and on
    `flush` (call it once the work is done: counts held back are otherwise lost)."""

    def __init__(self, sink: ProgressSink, every_s: float | None = None) -> None:
        self._sink = sink
        self._every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self._objects = self._total = self._advanced = self._done = 0
        self._last_key = ""
        self._due = time.monotonic() + self._every_s

    def add_total(self, objects: int, nbytes: int) -> None:
        self._objects += objects
        self._total += nbytes
        self._maybe_flush()

    def advance(self, nbytes: int) -> None:
        self._advanced += nbytes
        self._maybe_flush()

    def object_done(self, key: str) -> None:
        self._done += 1
        self._last_key = key
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        if self._objects or self._total:
            self._sink.add_total(self._objects, self._total)
        if self._advanced:
            self._sink.advance(self._advanced)
        for _ in range(self._done):
            self._sink.object_done(self._last_key)
        self._objects = self._total = self._advanced = self._done = 0
        self._due = time.monotonic() + self._every_s

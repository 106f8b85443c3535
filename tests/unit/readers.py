"""Test helpers shared by the row-count tests."""

from __future__ import annotations


class CountingReader:
    """A RangeReader over bytes in memory that records every read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]

"""The on-disk sort behind listings that are not in key order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.connectors.base import Capabilities, ObjectInfo
from bascule.connectors.memory import MemoryConnector
from bascule.migration import extsort
from bascule.migration.extsort import external_sort
from bascule.migration.service import sorted_listing


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(st.text("ab/é", max_size=4), st.integers(0, 9)), max_size=60),
    run_items=st.integers(1, 7),
    fan_in=st.integers(2, 4),
)
def test_tiny_runs_and_merge_passes_give_a_stable_sort(
    items: list[tuple[str, int]], run_items: int, fan_in: int
) -> None:
    out = list(external_sort(items, lambda t: t[0], run_items=run_items, fan_in=fan_in))
    assert out == sorted(items, key=lambda t: t[0])  # sorted() is stable: so is the merge


def test_runs_spill_to_disk_and_hold_at_most_a_run_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spilled: list[int] = []
    real_spill = extsort._spill

    def spy(items: Iterator[int], batch: int, directory: Path | None) -> object:
        run = real_spill(items, batch, directory)
        spilled.append(os.fstat(run.fileno()).st_size)
        return run

    monkeypatch.setattr(extsort, "_spill", spy)
    drawn = 0

    def source() -> Iterator[int]:
        nonlocal drawn
        for i in range(1000):
            drawn += 1
            yield (i * 7919) % 1000

    out = external_sort(source(), lambda i: i, run_items=50, fan_in=4, directory=tmp_path)
    assert next(out) == 0
    assert drawn == 1000 and all(size > 0 for size in spilled)
    # 20 runs of 50, merged 4 at a time in passes (5 runs, then 2), then the final merge
    assert len(spilled) == 20 + 5 + 2
    assert list(out) == list(range(1, 1000))
    assert os.listdir(tmp_path) == []  # anonymous files: nothing left behind


def test_small_inputs_never_touch_the_disk(tmp_path: Path) -> None:
    out = list(external_sort([3, 1, 2], lambda i: i, run_items=3, directory=tmp_path / "none"))
    assert out == [1, 2, 3]  # the directory does not even exist


class UnsortedMemory(MemoryConnector):
    """A memory container listing in reverse key order, declaring that it does not sort."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(sorted_listing=False)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(sorted(super().list(prefix), key=lambda o: o.key, reverse=True))


def test_a_backend_without_sorted_listing_is_sorted_before_the_merge() -> None:
    import io

    conn = UnsortedMemory()
    for key in ("a/b", "ab", "a-b", "é", "a/c/d"):
        conn.put(key, io.BytesIO(b"x"), 1)
    assert [o.key for o in sorted_listing(conn, "")] == ["a-b", "a/b", "a/c/d", "ab", "é"]

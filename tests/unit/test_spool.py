"""The plan spool: the counting pass's objects, read back once, in order, from memory or a
file once the plan is large."""

from __future__ import annotations

from pathlib import Path

import pytest

from bascule.migration import spool
from bascule.migration.plan import ObjectPlan, plan_parts
from bascule.migration.spool import PlanSpool


def _plan(i: int, size: int) -> ObjectPlan:
    return ObjectPlan(
        dataset="d", source_key=f"k{i:05d}", target_key=f"k{i:05d}", size=size,
        etag=f"e{i}", action="new", encrypt=False, part_size=5 * 2**20, target_size=size,
        parts=plan_parts(size, 5 * 2**20, False, 0),
    )  # fmt: skip


def test_a_small_plan_stays_in_memory_and_comes_back_in_order(tmp_path: Path) -> None:
    plans = [_plan(i, i) for i in range(3000)]
    held = PlanSpool(tmp_path)
    for plan in plans:
        held.add(plan)
    assert not held.on_disk and held.objects == 3000
    assert list(held.replay()) == plans
    assert list(tmp_path.iterdir()) == []  # no file made


def test_a_plan_past_the_memory_bound_goes_to_an_unlinked_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MEMORY_PARTS", 100)
    plans = [_plan(i, 11 * 2**20 if i % 7 == 0 else i) for i in range(2500)]  # 1 or 3 parts
    on_disk = PlanSpool(tmp_path)
    for i, plan in enumerate(plans):
        on_disk.add(plan)
        if i == 40:  # 40 objects, 52 parts: still in memory
            assert not on_disk.on_disk
    assert on_disk.on_disk
    assert list(tmp_path.iterdir()) == []  # the file has no name
    assert list(on_disk.replay()) == plans

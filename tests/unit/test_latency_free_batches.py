"""Batches of small objects between stores that answer without a network (local disks) run
one at a time per process: their threads would only take turns for the GIL. Batches that
touch a network store (here: a local folder said to be on an NFS mount) still overlap."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bascule.config import LocalEndpoint
from bascule.connectors import local
from bascule.connectors.fileio import on_network_fs
from bascule.endpoints import EndpointRef, clear_cache
from bascule.migration import tasks
from bascule.migration.plan import PartSpec
from bascule.migration.tasks import PartResult, PartTask, run_objects

# Long enough for a second thread to reach the barrier when batches overlap; the gated case
# waits it out once.
OVERLAP_SECONDS = 1.0


@pytest.fixture(autouse=True)
def fresh_connectors() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def _batch(root: Path, name: str) -> tuple[PartTask, ...]:
    (root / "src").mkdir(exist_ok=True)
    (root / "dst").mkdir(exist_ok=True)
    endpoint = LocalEndpoint(kind="local", path=root)
    part = PartSpec(1, 0, 1, 0, 1, 0, True)
    return tuple(
        PartTask(
            EndpointRef.of("src", endpoint, "src"),
            EndpointRef.of("dst", endpoint, "dst"),
            f"{name}-{i}",
            f"{name}-{i}",
            "",
            part,
            encrypt=False,
        )
        for i in range(2)
    )


def _overlapped(monkeypatch: pytest.MonkeyPatch, root: Path) -> bool:
    """Run two batches on two threads; whether both were ever inside a batch at once."""
    barrier = threading.Barrier(2, timeout=OVERLAP_SECONDS)
    met: list[bool] = []

    def object_task(
        task: PartTask, attempts_left: int, *, deferred: bool = False
    ) -> tuple[PartResult, int]:
        if task.source_key.endswith("-0"):  # once per batch
            try:
                barrier.wait()
                met.append(True)
            except threading.BrokenBarrierError:
                met.append(False)
        return PartResult(1, 1, 1, "p", "p", "e"), 1

    monkeypatch.setattr(tasks, "run_part_with_retries", object_task)
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = [pool.submit(run_objects, _batch(root, name), 3) for name in ("a", "b")]
        outcomes = [future.result() for future in done]
    assert all(isinstance(o, tuple) for batch in outcomes for o in batch)
    return all(met)


def test_local_disk_batches_run_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert on_network_fs(str(tmp_path)) is False  # the premise: a local disk or tmpfs
    assert not _overlapped(monkeypatch, tmp_path)


def test_batches_touching_a_network_mount_still_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "on_network_fs", lambda path: True)
    assert _overlapped(monkeypatch, tmp_path)


def test_a_file_system_that_cannot_be_told_counts_as_a_network_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "on_network_fs", lambda path: None)
    assert not local.LocalConnector(tmp_path).capabilities.latency_free
    assert on_network_fs(str(tmp_path / "missing")) is None

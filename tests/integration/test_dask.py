"""The same migration on Dask: a LocalCluster of 2 worker processes, real emulators."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, TypeVarTuple

import cloudpickle

from bascule.migration import service
from bascule.runners import DaskRunner, make_runner
from tests.integration.cloud import CloudSetup, MiB, sha256

R = TypeVar("R")
Ts = TypeVarTuple("Ts")


def _seed(cloud: CloudSetup) -> dict[str, bytes]:
    objects = {
        "snds/big/part-0.bin": os.urandom(16 * MiB + 3),
        "snds/small/é è.csv": b"a;b\n1;2\n",
        "snds/small/empty": b"",
    }
    objects.update({f"snds/many/{i:03d}.bin": os.urandom(40_000 + i) for i in range(12)})
    for key, data in objects.items():
        cloud.upload(key, data)
    return objects


class ScanningRunner:
    """Wraps a DaskRunner: pickles each task as Dask would and records it for the scan."""

    def __init__(self, inner: DaskRunner) -> None:
        self.inner = inner
        self.pickled: list[bytes] = []

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        self.pickled.append(cloudpickle.dumps((fn, *args)))
        return self.inner.submit(fn, *args)

    def shutdown(self) -> None:
        self.inner.shutdown()


def _seed_sandbox_data(cloud: CloudSetup) -> dict[str, bytes]:
    """The sandbox's own seeded SNDS-shaped datasets (small scale), under snds/."""
    from bascule.sandbox.seed import SeedOptions, build_objects

    objects = {}
    for obj in build_objects(SeedOptions(seed=7, scale=0.02, part_size=5 * MiB)):
        objects[f"snds/{obj.key}"] = obj.data
        cloud.upload(f"snds/{obj.key}", obj.data)
    return objects


def test_dask_local_cluster_migrates_and_verifies_the_seeded_data_and_tasks_carry_no_secret(
    cloud: CloudSetup,
) -> None:
    from bascule.verification.evidence import ObjectRecord
    from bascule.verification.verify import verify

    objects = _seed_sandbox_data(cloud)
    cfg = cloud.config(concurrency=4)
    inner = make_runner("dask-local:2", cfg.transfer.concurrency)
    assert isinstance(inner, DaskRunner)
    runner = ScanningRunner(inner)
    try:
        outcome = service.migrate(cfg, runner=runner)
    finally:
        runner.shutdown()
    assert outcome.stats.objects_committed == len(objects)
    for key, data in objects.items():
        assert sha256(cloud.decrypt_target(key.replace("snds/", "hdh/", 1))) == sha256(data)
    assert len(runner.pickled) == outcome.stats.parts_sent
    hits = [s for s in cloud.secrets for blob in runner.pickled if s.encode() in blob]
    assert hits == []
    tasks = make_runner("dask-local:2", cfg.transfer.concurrency)
    try:
        records: list[ObjectRecord] = []
        report = verify(cfg, level="full", rows=True, runner=tasks, on_record=records.append)
    finally:
        tasks.shutdown()
    assert report.ok, report.first_findings
    assert len(records) == report.objects == len(objects)
    counted = [r for r in records if r.source_rows is not None]
    assert counted and all(r.source_rows == r.target_rows for r in counted)


class KillOneWorker:
    """Kills one Dask worker process (SIGKILL) once `after` parts have completed."""

    def __init__(self, inner: DaskRunner, after: int) -> None:
        self.inner = inner
        self.after = after
        self.done = 0
        self.killed: int | None = None
        self.lock = threading.Lock()

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        future = self.inner.submit(fn, *args)
        future.add_done_callback(self._maybe_kill)
        return future

    def _maybe_kill(self, _: Future[Any]) -> None:
        with self.lock:
            self.done += 1
            if self.done != self.after:
                return
        pids = self.inner.client.run(os.getpid)
        self.killed = sorted(pids.values())[0]
        os.kill(self.killed, signal.SIGKILL)

    def shutdown(self) -> None:
        self.inner.shutdown()


def test_a_worker_killed_mid_run_still_ends_complete(cloud: CloudSetup) -> None:
    objects = _seed(cloud)
    cfg = cloud.config(concurrency=4)
    inner = make_runner("dask-local:2", cfg.transfer.concurrency)
    assert isinstance(inner, DaskRunner)
    runner = KillOneWorker(inner, after=3)
    try:
        service.migrate(cfg, runner=runner)
    finally:
        runner.shutdown()
    assert runner.killed is not None
    for key, data in objects.items():
        assert sha256(cloud.decrypt_target(key.replace("snds/", "hdh/", 1))) == sha256(data)
    journal = service.open_journal(cfg, create=False)
    assert journal is not None
    states = {r.target_key: r.state for r in journal.objects()}
    journal.close()
    assert set(states.values()) == {"committed"} and len(states) == len(objects)

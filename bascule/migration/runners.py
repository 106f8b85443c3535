"""Where part tasks run: local threads, or Dask distributed workers.

The same task function (`tasks.run_part_with_retries`) runs everywhere. On Dask, object
bytes move between the workers and the storage services only: a task's result is a small
`PartResult`, never data, and the coordinator alone writes the journal.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from typing import Any

from bascule.config import Config
from bascule.errors import UsageError
from bascule.migration.coordinator import PartRunner, ThreadRunner
from bascule.migration.tasks import PartResult, PartTask, run_part_with_retries

_DASK_LOCAL = re.compile(r"^dask-local:(\d+)$")
_DASK_REMOTE = re.compile(r"^dask://[\w.\-]+:\d+$")


class DaskRunner:
    """Submits part tasks to a Dask cluster; futures are bridged to concurrent.futures.

    `retries` lets Dask reschedule a task whose worker died (the task is idempotent: writing
    part n again replaces it)."""

    def __init__(self, client: Any, cluster: Any = None, retries: int = 3) -> None:
        self._client = client
        self._cluster = cluster
        self._retries = retries

    def submit(self, task: PartTask, attempts_left: int) -> Future[tuple[PartResult, int]]:
        bridge: Future[tuple[PartResult, int]] = Future()
        dask_future = self._client.submit(
            run_part_with_retries, task, attempts_left, pure=False, retries=self._retries
        )

        def done(f: Any) -> None:
            try:
                bridge.set_result(f.result())
            except BaseException as exc:  # the task's own error, re-raised for the coordinator
                bridge.set_exception(exc)

        dask_future.add_done_callback(done)
        return bridge

    def shutdown(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_runner(spec: str, cfg: Config) -> PartRunner | None:
    """`local` -> None (the service makes a thread pool), `dask-local:N`, `dask://HOST:PORT`."""
    if spec == "local":
        return None
    if spec == "threads":
        return ThreadRunner(cfg.transfer.concurrency)
    local = _DASK_LOCAL.match(spec)
    if local:
        return _dask_local(int(local.group(1)), cfg)
    if _DASK_REMOTE.match(spec):
        from distributed import Client

        address = spec.removeprefix("dask://")
        try:
            client = Client(f"tcp://{address}", timeout=10)
        except OSError as exc:
            raise UsageError(
                f"--executor {spec}: no Dask scheduler answers at {address} ({exc}); start one "
                "with `dask scheduler` or check the address"
            ) from None
        return DaskRunner(client)
    raise UsageError(
        f"--executor {spec!r}: unknown executor; use local, dask-local:N or dask://HOST:PORT"
    )


def _dask_local(workers: int, cfg: Config) -> DaskRunner:
    if workers < 1:
        raise UsageError("--executor dask-local:N needs N >= 1")
    from distributed import Client, LocalCluster

    threads = max(1, cfg.transfer.concurrency // workers)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    return DaskRunner(Client(cluster), cluster)

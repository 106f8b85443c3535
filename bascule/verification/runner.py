"""Where verify's read tasks run: a local thread pool, or a Dask cluster.

The task functions (`reread.read_parts`, `reread.count_object_rows`) are module-level and
their arguments picklable and free of secrets, so the same call runs in either place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from bascule.errors import UsageError

T = TypeVar("T")
R = TypeVar("R")
_DASK_LOCAL = re.compile(r"^dask-local:(\d+)$")
_DASK_REMOTE = re.compile(r"^dask://[\w.\-]+:\d+$")


class TaskRunner(Protocol):
    def submit(self, fn: Callable[[T], R], task: T) -> Future[R]: ...

    def shutdown(self) -> None: ...


class ThreadTaskRunner:
    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="verify")

    def submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        return self._pool.submit(fn, task)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskTaskRunner:
    """Submits tasks to a Dask cluster; its futures are bridged to concurrent.futures."""

    def __init__(self, client: Any, cluster: Any = None) -> None:
        self._client = client
        self._cluster = cluster

    def submit(self, fn: Callable[[T], R], task: T) -> Future[R]:
        bridge: Future[R] = Future()

        def done(f: Any) -> None:
            try:
                bridge.set_result(f.result())
            except BaseException as exc:  # the task's own error, re-raised for the caller
                bridge.set_exception(exc)

        self._client.submit(fn, task, pure=False).add_done_callback(done)
        return bridge

    def shutdown(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_task_runner(spec: str, concurrency: int) -> TaskRunner:
    """`local` (threads), `dask-local:N` (N worker processes) or `dask://HOST:PORT`.

    Raises UsageError on an unknown spec or when no scheduler answers."""
    if spec in ("local", "threads"):
        return ThreadTaskRunner(concurrency)
    local = _DASK_LOCAL.match(spec)
    if local and int(local.group(1)) >= 1:
        from distributed import Client, LocalCluster

        workers = int(local.group(1))
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=max(1, concurrency // workers),
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        return DaskTaskRunner(Client(cluster), cluster)  # type: ignore[no-untyped-call]
    if _DASK_REMOTE.match(spec):
        from distributed import Client

        address = spec.removeprefix("dask://")
        try:
            client = Client(f"tcp://{address}", timeout=10)  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise UsageError(
                f"--executor {spec}: no Dask scheduler answers at {address} ({exc}); start one "
                "with `dask scheduler` or check the address"
            ) from None
        return DaskTaskRunner(client)
    raise UsageError(
        f"--executor {spec!r}: unknown executor; use local, dask-local:N or dask://HOST:PORT"
    )

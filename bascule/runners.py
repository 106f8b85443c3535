"""Where tasks run: local threads, or Dask distributed workers. One factory for `--executor`.

`migrate` submits its part tasks (`migration.tasks.run_part_with_retries`) and `verify` its
read tasks (`verification.reread`) through the same `TaskRunner`. A task function is
module-level and its arguments are picklable and free of secrets, so the same call runs in
a thread or on a worker; a task's result is a small record, never object data.

Executor specs:

- `auto` (the CLI's default, resolved by `choose_executor`): `processes:N` when every store
  the datasets read or write is a folder on a local disk, `local` otherwise;
- `local`: a thread pool of `concurrency` threads in this process;
- `processes:N`: N worker processes on this machine, `concurrency / N` threads each
  (`bascule.processes`): per-object work holds the GIL, so one process uses one core;
- `dask-local:N`: a Dask LocalCluster of N worker processes on 127.0.0.1;
- `dask://HOST:PORT`: an existing scheduler over plain TCP, loopback hosts only;
- `dask+tls://HOST:PORT`: an existing scheduler over mutual TLS. The client's certificates
  come from `BASCULE_DASK_TLS_CA_FILE`, `BASCULE_DASK_TLS_CERT_FILE` and
  `BASCULE_DASK_TLS_KEY_FILE`; encryption is required on every connection.

Workers hold storage credentials and the journal key, and a Dask scheduler runs whatever
code its clients send: anyone who reaches a plain scheduler port can read them, so plain
TCP is refused to any host but this machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar, TypeVarTuple

from bascule.config import Config, LocalEndpoint, Location
from bascule.endpoints import EndpointRef, connector
from bascule.errors import UsageError
from bascule.tuning import usable_cores
from bascule.urls import is_loopback

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

AUTO = "auto"
SPECS = "auto, local, processes:N, dask-local:N, dask+tls://HOST:PORT or dask://127.0.0.1:PORT"
TLS_ENV = {
    "ca": "BASCULE_DASK_TLS_CA_FILE",
    "cert": "BASCULE_DASK_TLS_CERT_FILE",
    "key": "BASCULE_DASK_TLS_KEY_FILE",
}
DASK_RETRIES = 3  # reschedules of a task whose worker died; every task is idempotent
_DASK_LOCAL = re.compile(r"^dask-local:(\d+)$")
_PROCESSES = re.compile(r"^processes:(\d+)$")
_DASK_REMOTE = re.compile(r"^(dask|dask\+tls)://([\w.\-]+):(\d+)$")


class TaskRunner(Protocol):
    """Runs `fn(*args)` somewhere and returns a Future of its result (or its exception)."""

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]: ...

    def shutdown(self) -> None: ...


class ThreadRunner:
    """A thread pool in this process."""

    def __init__(self, concurrency: int, name: str = "task") -> None:
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskRunner:
    """Submits tasks to a Dask cluster; its futures are bridged to concurrent.futures.

    `retries` lets Dask run a task again when it failed or its worker died (tasks are
    idempotent: writing part n again replaces it, a read is a read). `cluster`, when given,
    is closed with the client (a cluster this runner started)."""

    def __init__(self, client: Any, cluster: Any = None, retries: int = DASK_RETRIES) -> None:
        self.client = client
        self._cluster = cluster
        self._retries = retries

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        bridge: Future[R] = Future()

        def done(f: Any) -> None:
            try:
                bridge.set_result(f.result())
            except BaseException as exc:  # the task's own error, re-raised for the caller
                bridge.set_exception(exc)

        self.client.submit(fn, *args, pure=False, retries=self._retries).add_done_callback(done)
        return bridge

    def shutdown(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def choose_executor(spec: str, cfg: Config, dataset: str | None = None) -> str:
    """`spec`, or for `auto` what suits the datasets: `processes:N`, N the cores this process
    may use (at most `transfer.concurrency`), when every store they read or write is a
    folder on a local disk and there are two cores or more; `local` otherwise.

    Per-object work between local disks holds the GIL (the age header's key exchange,
    hashing, system calls of microseconds), so one process uses one core: 20,000 encrypted
    files of 11 bytes on 2 cores take 3.6 times rclone crypt's time on threads, 2.4 times on
    `processes:2`. Over the network, threads wait on requests with the GIL released: one
    process is as fast and lighter (README, "Scaling out")."""
    if spec != AUTO:
        return spec
    count = min(usable_cores(), cfg.transfer.concurrency)
    stores = [loc for ds in cfg.select(dataset) for loc in (ds.source, ds.target)]
    if count >= 2 and stores and all(_on_local_disk(cfg, loc) for loc in stores):
        return f"processes:{count}"
    return "local"


def _on_local_disk(cfg: Config, loc: Location) -> bool:
    """A `local` endpoint's folder on a local disk (not a network mount; a folder that
    cannot be told, or is missing: not)."""
    endpoint = cfg.endpoints[loc.endpoint]
    if not isinstance(endpoint, LocalEndpoint):
        return False
    return connector(EndpointRef.of(loc.endpoint, endpoint, loc.store)).capabilities.latency_free


def make_runner(spec: str, concurrency: int) -> TaskRunner:
    """The runner `--executor SPEC` names (see the module docstring).

    Raises UsageError (exit 2) on an unknown spec, plain TCP to a non-loopback host, missing
    TLS certificates, or when no scheduler answers."""
    if spec == "local":
        return ThreadRunner(concurrency)
    processes = _PROCESSES.match(spec)
    if processes:
        count = int(processes.group(1))
        if count < 1:
            raise UsageError("--executor processes:N needs N >= 1")
        from bascule.processes import ProcessRunner

        return ProcessRunner(count, max(1, concurrency // count))
    local = _DASK_LOCAL.match(spec)
    if local:
        return _dask_local(int(local.group(1)), concurrency)
    remote = _DASK_REMOTE.match(spec)
    if remote:
        scheme, host, port = remote.groups()
        if scheme == "dask+tls":
            return _connect(spec, f"tls://{host}:{port}", tls_security(spec))
        if not is_loopback(host):
            raise UsageError(
                f"--executor {spec}: plain dask:// sends tasks and results unencrypted and "
                f"unauthenticated, so it is allowed to 127.0.0.1/localhost only; use "
                f"dask+tls://{host}:{port} with {TLS_ENV['ca']}, {TLS_ENV['cert']} and "
                f"{TLS_ENV['key']} (docs/scale-out.md)"
            )
        return _connect(spec, f"tcp://{host}:{port}", None)
    raise UsageError(f"--executor {spec!r}: unknown executor; use {SPECS}")


def tls_security(spec: str) -> Any:
    """Dask's `Security` for a mutual-TLS client, from the BASCULE_DASK_TLS_* files."""
    paths = {}
    for what, name in TLS_ENV.items():
        value = os.environ.get(name, "")
        if not value:
            raise UsageError(
                f"--executor {spec}: {name} is not set; export the paths of the cluster's CA "
                f"certificate ({TLS_ENV['ca']}), this client's certificate ({TLS_ENV['cert']}) "
                f"and its private key ({TLS_ENV['key']})"
            )
        if not Path(value).is_file():
            raise UsageError(
                f"--executor {spec}: {name}={value} is not a readable file; point it at the "
                f"{what} file issued for this client"
            )
        paths[what] = value
    from distributed.security import Security

    return Security(
        tls_ca_file=paths["ca"],
        tls_client_cert=paths["cert"],
        tls_client_key=paths["key"],
        require_encryption=True,
    )


def _connect(spec: str, address: str, security: Any) -> DaskRunner:
    from distributed import Client

    try:
        client = Client(address, security=security, timeout=10)
    except OSError as exc:
        hint = " or it refused this client's certificate" if security is not None else ""
        raise UsageError(
            f"--executor {spec}: no Dask scheduler answers at {address}{hint} ({exc}); start "
            "one with `dask scheduler` or check the address"
        ) from None
    return DaskRunner(client)


def _dask_local(workers: int, concurrency: int) -> DaskRunner:
    if workers < 1:
        raise UsageError("--executor dask-local:N needs N >= 1")
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=max(1, concurrency // workers),
        processes=True,
        host="127.0.0.1",
        # a free loopback port: the scheduler serves HTTP even without a dashboard, and a
        # fixed 8787 would collide with any other cluster on the machine
        dashboard_address="127.0.0.1:0",
    )
    return DaskRunner(Client(cluster), cluster)

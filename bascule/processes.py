"""Worker processes on this machine, each running tasks on threads: `--executor processes:N`.

Why: per-object work (age header key exchange, hashing, file system calls) holds Python's
GIL, so one process uses one core however many threads it has; N processes use N cores.
Dask's LocalCluster does the same with a scheduler between (about a second to start and a
millisecond per task); these workers are fresh interpreters (``python -m
bascule.processes``: never a fork of a threaded parent, nor a re-import of its main module),
fed over a socket each.

Contract: the same as every `TaskRunner` (module-level task functions, picklable arguments
and results, no secret in a task: workers read their own environment, inherited at start).
A worker runs `threads` tasks at a time. A worker that dies fails its tasks with
`WorkerLost` (the coordinator counts an attempt); a parent that dies takes its workers with
it (each exits when its pipe closes, abandoning what it was doing: the journal's crash bound
covers it). Workers ignore Ctrl-C: the parent stops feeding them and waits for them.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar, TypeVarTuple

from bascule.tuning import tune_allocator, tune_gc

R = TypeVar("R")
Ts = TypeVarTuple("Ts")


class WorkerLost(RuntimeError):
    """The worker process running a task exited before answering."""


def _serve(conn: Connection, threads: int) -> None:
    """A worker's loop: run each (id, fn, args) received on a thread, send (id, ok, value)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="task")

    def run(task_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            answer: tuple[int, bool, Any] = (task_id, True, fn(*args))
        except BaseException as exc:  # the task's own error, sent back as is
            answer = (task_id, False, exc)
        with send_lock:
            conn.send(answer)

    frozen = False
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the parent is gone: stop at once
        if message is None:
            pool.shutdown(wait=True)
            conn.close()
            return
        if message[0] == IDLE:
            run_idle(message[1], message[2], conn)
            continue
        if not frozen:  # the first task imported the task modules: long-lived too
            gc.freeze()
            frozen = True
        pool.submit(run, *message)


IDLE = "idle"  # a message (IDLE, fn, args): work for a worker with nothing else to do


def run_idle(fn: Callable[..., Any], args: tuple[Any, ...], conn: Connection) -> None:
    """`fn(*args, stop=...)` on the worker's main thread, where `stop()` turns true once
    another message is waiting: the next task waits only for the step `fn` is in. Idle work
    is an optimisation: its errors are dropped (it is not a task, and has no one to answer)."""
    with contextlib.suppress(Exception):
        fn(*args, stop=conn.poll)


class _Worker:
    def __init__(self, threads: int) -> None:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bascule.processes", str(fd), str(threads)],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.pending: dict[int, Future[Any]] = {}
        self.alive = True  # False once its answers stopped: nothing more is sent to it
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name="worker-results", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                task_id, ok, value = self.conn.recv()
            except (EOFError, OSError):
                break
            with self.lock:
                future = self.pending.pop(task_id)
            future.set_result(value) if ok else future.set_exception(value)
        with self.lock:
            lost, self.pending, self.alive = self.pending, {}, False
        for future in lost.values():
            future.set_exception(WorkerLost("a worker process exited before answering"))


class ProcessRunner:
    """`processes` worker processes of `threads` threads each; tasks go round robin."""

    def __init__(self, processes: int, threads: int) -> None:
        self._workers = [_Worker(threads) for _ in range(processes)]
        self._ids = itertools.count()
        self._next = itertools.cycle(self._workers)
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        future: Future[R] = Future()
        with self._lock:
            task_id, worker = next(self._ids), next(self._next)
            with worker.lock:
                if not worker.alive:
                    future.set_exception(WorkerLost("a worker process exited"))
                    return future
                worker.pending[task_id] = future
            try:
                worker.conn.send((task_id, fn, args))
            except (OSError, ValueError) as exc:
                with worker.lock:
                    worker.pending.pop(task_id, None)
                future.set_exception(WorkerLost(f"a worker process is gone ({exc})"))
        return future

    def while_idle(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Have every worker but the first run `fn(*args, stop=...)` until its first task
        comes (see `run_idle`): work that tasks would do later, done while this process is
        busy on its own (a migration's counting pass keeps one core; the others would idle).
        The first worker is left out so that this process keeps a core of its own."""
        with self._lock:
            for worker in self._workers[1:]:
                with contextlib.suppress(OSError, ValueError):  # a worker already gone
                    worker.conn.send((IDLE, fn, args))

    def worker_pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def shutdown(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError, ValueError):  # already gone
                worker.conn.send(None)
        for worker in self._workers:
            try:
                worker.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.reader.join(timeout=5)
            worker.conn.close()


def main(argv: list[str]) -> None:
    """A worker: `python -m bascule.processes FD THREADS` (FD: its end of the socket).

    Tuned as the CLI's process is: the same per-part buffers and per-object allocations run
    here (20,000 tiny objects: 4 % less worker CPU with the collector tuned)."""
    tune_allocator()
    tune_gc()
    _serve(Connection(int(argv[0])), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])

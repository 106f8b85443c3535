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

import atexit
import contextlib
import gc
import importlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar, TypeVarTuple

from bascule.tuning import tune_allocator, tune_gc

R = TypeVar("R")
Ts = TypeVarTuple("Ts")


class WorkerLost(RuntimeError):
    """The worker process running a task exited before answering."""


def _serve(conn: Connection, threads: int) -> None:
    """A worker's loop: run each (id, fn, args) received on a thread, send (id, ok, value).
    `threads` 0 (a worker started early): (THREADS, n) says how many, after any idle work."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()
    while not threads:  # started early: idle work until a runner takes it, or none
        try:
            first = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # not taken: the parent ended it, or is gone
        if isinstance(first, tuple) and first[0] == IDLE:
            run_idle(first[1], first[2], conn)
        elif isinstance(first, tuple) and first[0] == THREADS:
            threads = int(first[1])
        else:
            os._exit(0)
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
THREADS = "threads"  # (THREADS, n): the first message to a worker started early


def run_idle(fn: Callable[..., Any], args: tuple[Any, ...], conn: Connection) -> None:
    """`fn(*args, stop=...)` on the worker's main thread, where `stop()` turns true once
    another message is waiting: the next task waits only for the step `fn` is in. Idle work
    is an optimisation: its errors are dropped (it is not a task, and has no one to answer)."""
    with contextlib.suppress(Exception):
        fn(*args, stop=conn.poll)


class _Worker:
    def __init__(self, threads: int, preload: Sequence[str] = ()) -> None:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bascule.processes", str(fd), str(threads), *preload],
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

    def end(self) -> None:
        """Kill a worker that was given no task, and reap it."""
        self.process.kill()
        self.process.wait()
        self.reader.join(timeout=5)
        self.conn.close()


# Workers started before this process knows its executor (`start_early`), until a
# ProcessRunner takes them or `end_early` ends them.
_early: list[_Worker] = []
_early_lock = threading.Lock()


def start_early(processes: int, preload: Sequence[str]) -> None:
    """Start `processes` workers now, importing the modules `preload` names, for a command
    that will likely run on worker processes but has not yet loaded its configuration.

    Why: a worker's start-up (an interpreter, then the task modules: about 0.2 CPU s) then
    runs while this process imports and reads its configuration on one core, instead of
    after, when every core has tasks (20,000 tiny files on 2 cores: 0.97 of the wall time,
    ten alternating pairs). The next `ProcessRunner` takes them; those it does not take are
    ended by `end_early`, which also runs at exit."""
    with _early_lock:
        if not _early:
            atexit.register(end_early)
        _early.extend(_Worker(0, preload) for _ in range(processes))


def while_early_idle(fn: Callable[..., Any], /, *args: Any) -> None:
    """Have the workers started early run `fn(*args, stop=...)` until a runner takes them
    (see `run_idle`): while this process still loads, their cores have nothing else to do."""
    with _early_lock:
        for worker in _early:
            with contextlib.suppress(OSError, ValueError):  # a worker already gone
                worker.conn.send((IDLE, fn, args))


def end_early() -> None:
    """End the workers started early that no runner took (they ran no task: killed)."""
    with _early_lock:
        left = _early[:]
        _early.clear()
    for worker in left:
        worker.end()


def _take_early(processes: int, threads: int) -> list[_Worker]:
    with _early_lock:
        taken = _early[:processes]
        del _early[:processes]
    for worker in taken:
        with contextlib.suppress(OSError, ValueError):  # gone: its tasks fail as WorkerLost
            worker.conn.send((THREADS, threads))
    return taken


class ProcessRunner:
    """`processes` worker processes of `threads` threads each. A task goes to the live worker
    with the fewest tasks unanswered, in turn on a tie: workers do not all go at one speed
    (one made more header shares ahead than another, a core is shared), and round robin
    left the faster one idle with the other's queue still full at the end (20,000 tiny
    files, 2 workers: 0.43 s). Workers started early (`start_early`) are taken first;
    `started_early` says how many."""

    def __init__(self, processes: int, threads: int) -> None:
        early = _take_early(processes, threads)
        self.started_early = len(early)
        self._workers = early + [_Worker(threads) for _ in range(processes - len(early))]
        self._ids = itertools.count()
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        future: Future[R] = Future()
        with self._lock:
            task_id, worker = next(self._ids), self._least_busy()
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

    def _least_busy(self) -> _Worker:
        """The live worker with the fewest unanswered tasks, from the next in turn (a dead
        one only when all are: its task then fails as WorkerLost)."""
        count = len(self._workers)
        start = next(self._turn)
        turn = [self._workers[(start + i) % count] for i in range(count)]
        return min(turn, key=lambda w: len(w.pending) if w.alive else float("inf"))

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
    """A worker: `python -m bascule.processes FD THREADS [MODULE ...]` (FD: its end of the
    socket; THREADS 0: told by the first message; each MODULE imported before serving: what
    its tasks will need, loaded while it has nothing else to do).

    Tuned as the CLI's process is: the same per-part buffers and per-object allocations run
    here (20,000 tiny objects: 4 % less worker CPU with the collector tuned)."""
    tune_allocator()
    tune_gc()
    for name in argv[2:]:
        with contextlib.suppress(ImportError):  # a task that needs it fails, and says why
            importlib.import_module(name)
    _serve(Connection(int(argv[0])), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])

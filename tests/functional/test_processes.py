"""`--executor processes:N`: worker processes, each with threads, fed over a socket."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pyrage
import pytest
import yaml
from typer.testing import CliRunner

from bascule import runners
from bascule.age import keys
from bascule.age.keys import precompute_ephemerals, ready_ephemerals
from bascule.age.stream import X25519Identity
from bascule.cli.app import app
from bascule.cli.migrate import open_runner
from bascule.config import Config, load_config
from bascule.connectors import local
from bascule.endpoints import clear_cache
from bascule.errors import UsageError
from bascule.migration import service
from bascule.processes import (
    ProcessRunner,
    WorkerLost,
    end_early,
    run_idle,
    start_early,
    while_early_idle,
)
from bascule.runners import choose_executor, make_runner
from bascule.tuning import usable_cores
from tests.functional.conftest import LocalConfig, MiB, age_decrypt, sha256


def _seed(root: Path, count: int) -> dict[str, bytes]:
    objects = {}
    for i in range(count):
        key = f"in/d{i % 3}/o{i:03d}.bin"
        data = os.urandom(i * 997 if i % 10 else MiB * 6 + i)  # small ones and a few of parts
        path = root / "src" / "c" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        objects[key] = data
    return objects


def test_migrate_on_worker_processes_writes_what_age_decrypts(
    tmp_path: Path, local_config: LocalConfig, identity_file: tuple[Path, str]
) -> None:
    objects = _seed(tmp_path, 40)
    runner = make_runner("processes:2", 4)
    assert isinstance(runner, ProcessRunner)
    try:
        outcome = service.migrate(local_config(), runner=runner)
        pids = runner.worker_pids()
    finally:
        runner.shutdown()
    assert outcome.stats.objects_committed == len(objects)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    for key, data in objects.items():
        target = tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)
        assert sha256(age_decrypt(target, identity_file[0])) == sha256(data)
    assert all(not _alive(pid) for pid in pids)  # shutdown waited for them


def test_a_task_error_comes_back_unchanged_and_a_dead_worker_is_reported() -> None:
    runner = ProcessRunner(1, 2)
    try:
        assert runner.submit(pow, 2, 10).result(timeout=60) == 1024
        with pytest.raises(ZeroDivisionError):
            runner.submit(divmod, 1, 0).result(timeout=60)
        with pytest.raises(WorkerLost):
            runner.submit(os._exit, 3).result(timeout=60)
        with pytest.raises(WorkerLost):  # its worker is gone: later tasks fail, never hang
            runner.submit(pow, 2, 2).result(timeout=60)
    finally:
        runner.shutdown()


def test_idle_work_runs_until_a_message_waits_and_its_errors_stay_in_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keys, "_READY", {})  # this process's pool, for this test only
    recipient = str(X25519Identity.generate().recipient())
    ours, theirs = socket.socketpair()
    sender, worker = Connection(ours.detach()), Connection(theirs.detach())
    try:
        run_idle(precompute_ephemerals, ((recipient,), 40), worker)  # nothing waits: all 40
        assert ready_ephemerals(recipient) == 40
        sender.send("a task")
        run_idle(precompute_ephemerals, ((recipient,), 80), worker)  # a message waits: none
        assert ready_ephemerals(recipient) == 40
        run_idle(precompute_ephemerals, (("not a key",),), worker)  # dropped, not raised
        assert worker.recv() == "a task"
    finally:
        sender.close()
        worker.close()


def test_idle_work_runs_on_every_worker_but_the_first_and_yields_to_tasks() -> None:
    recipient = str(X25519Identity.generate().recipient())
    runner = ProcessRunner(2, 1)
    try:
        # Hours of work if nothing stopped it: the next task must still be answered.
        runner.while_idle(precompute_ephemerals, (recipient,), 10**9)
        first = runner.submit(ready_ephemerals, recipient)  # round robin: worker 1, then 2
        second = runner.submit(ready_ephemerals, recipient)
        assert first.result(timeout=60) == 0  # the first worker keeps to tasks
        assert second.result(timeout=60) >= 0
        assert runner.submit(pow, 2, 10).result(timeout=60) == 1024
    finally:
        runner.shutdown()


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from bascule.processes import ProcessRunner\n"
        "runner = ProcessRunner(2, 1)\n"
        "print(*runner.worker_pids(), flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        parent.kill()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def test_processes_needs_at_least_one() -> None:
    with pytest.raises(UsageError, match="processes:N needs N >= 1"):
        make_runner("processes:0", 8)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _cores(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(count)))


def test_auto_runs_worker_processes_between_local_disks_up_to_the_concurrency(
    local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cores(monkeypatch, 4)
    assert choose_executor("auto", local_config(concurrency=8)) == "processes:4"
    assert choose_executor("auto", local_config(concurrency=3)) == "processes:3"
    assert choose_executor("local", local_config()) == "local"  # a given spec is kept
    _cores(monkeypatch, 1)
    assert choose_executor("auto", local_config()) == "local"  # one core: one process


def test_auto_keeps_threads_for_a_network_mount_a_missing_folder_or_a_remote_store(
    tmp_path: Path, local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cores(monkeypatch, 4)
    cfg = local_config()
    with monkeypatch.context() as m:
        m.setattr(local, "on_network_fs", lambda path: True)
        assert choose_executor("auto", cfg) == "local"
    (tmp_path / "dst" / "b").rmdir()
    assert choose_executor("auto", _reloaded(cfg)) == "local"
    assert choose_executor("auto", _with_s3_target(cfg, tmp_path)) == "local"


def _reloaded(cfg: Config) -> Config:
    """The same configuration, read again (fresh connectors: none cached yet)."""
    clear_cache()
    return load_config(cfg.source_path)


def _with_s3_target(cfg: Config, tmp_path: Path) -> Config:
    data = yaml.safe_load(cfg.source_path.read_text())
    data["endpoints"]["ovh-gra"] = {"kind": "s3", "endpoint_url": "https://127.0.0.1:9",
                                    "region": "gra"}  # fmt: skip
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_migrate_and_verify_by_default_run_on_worker_processes_between_local_folders(
    tmp_path: Path,
    local_config: LocalConfig,
    identity_file: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = _seed(tmp_path, 12)
    cfg = local_config()
    doc = yaml.safe_load(cfg.source_path.read_text())
    doc["encryption"]["identity_file_env"] = "T_PROCESSES_IDENTITY"
    cfg.source_path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("T_PROCESSES_IDENTITY", str(identity_file[0]))
    _cores(monkeypatch, 2)
    made: list[str] = []

    def recording(spec: str, concurrency: int) -> runners.TaskRunner:
        made.append(spec)
        return make_runner(spec, concurrency)

    monkeypatch.setattr(runners, "make_runner", recording)
    result = CliRunner().invoke(app, ["migrate", "-c", str(cfg.source_path)])
    assert result.exit_code == 0, result.output
    verified = CliRunner().invoke(app, ["verify", "-c", str(cfg.source_path), "--level", "full"])
    assert verified.exit_code == 0, verified.output
    assert made == ["processes:2", "processes:2"]
    events = [json.loads(line) for log in (tmp_path / "state" / "logs").glob("*.jsonl")
              for line in log.read_text().splitlines()]  # fmt: skip
    chosen = [(e["asked"], e["chosen"]) for e in events if e.get("event") == "executor"]
    assert chosen == [("auto", "processes:2"), ("auto", "processes:2")]
    for key, data in objects.items():
        target = tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)
        assert sha256(age_decrypt(target, identity_file[0])) == sha256(data)


def _worker_pids(parent: int) -> list[int]:
    """The `bascule.processes` workers whose parent is `parent`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and b"bascule.processes" in cmdline:
            pids.append(int(entry.name))
    return pids


def _journal_sums(journal: Path) -> tuple[int, int]:
    """(committed objects, their plaintext bytes) in the journal, 0s before it exists."""
    if not journal.exists():
        return 0, 0
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT COUNT(*), COALESCE(SUM(source_size), 0) FROM objects "
                         "WHERE state='committed'").fetchone()  # fmt: skip
        return int(row[0]), int(row[1])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0, 0
    finally:
        db.close()


@pytest.mark.slow
def test_a_killed_migrate_on_worker_processes_resumes_and_sends_again_only_what_was_in_flight(
    tmp_path: Path, local_config: LocalConfig, identity_file: tuple[Path, str]
) -> None:
    objects = {}
    for i in range(3000):
        key = f"in/d{i % 30:02d}/o{i:04d}.bin"
        objects[key] = os.urandom(1000 + i % 7)
        path = tmp_path / "src" / "c" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(objects[key])
    bound = 64 * 1024
    cfg = local_config(concurrency=8, max_bytes_in_flight="64KiB")
    journal = cfg.journal
    cli = [sys.executable, "-m", "bascule.cli.app", "migrate", "-c", str(cfg.source_path)]
    with subprocess.Popen([*cli, "--executor", "processes:2"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as run:  # fmt: skip
        deadline = time.monotonic() + 120
        while _journal_sums(journal)[0] < 300 and run.poll() is None:
            assert time.monotonic() < deadline, "the run committed nothing in 120 s"
            time.sleep(0.01)
        workers = _worker_pids(run.pid)
        run.kill()  # the coordinator alone: its workers must notice and go
    assert len(workers) == 2
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)
    committed, done = _journal_sums(journal)
    assert 300 <= committed < len(objects)  # killed mid-run
    resumed = subprocess.run(cli, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    db = sqlite3.connect(journal)
    try:
        sent = int(db.execute("SELECT bytes FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    finally:
        db.close()
    total = sum(len(data) for data in objects.values())
    assert 0 <= sent - (total - done) <= bound  # sent again: at most the bytes in flight
    rage = pyrage.x25519.Identity.from_str(identity_file[0].read_text().split()[-1])
    for key, data in objects.items():  # pyrage, an independent reader, for all 3,000
        target = tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)
        assert pyrage.decrypt(target.read_bytes(), [rage]) == data, key


@pytest.mark.parametrize("encrypt", [True, False])
def test_migrate_has_spare_workers_make_header_keys_while_it_counts(
    tmp_path: Path,
    local_config: LocalConfig,
    monkeypatch: pytest.MonkeyPatch,
    encrypt: bool,
) -> None:
    _seed(tmp_path, 5)
    cfg = local_config(encrypt=encrypt)
    asked: list[tuple[object, tuple[object, ...]]] = []
    real = ProcessRunner.while_idle

    def recording(self: ProcessRunner, fn: object, /, *args: object) -> None:
        asked.append((fn, args))
        real(self, fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ProcessRunner, "while_idle", recording)
    runner = ProcessRunner(2, 2)
    try:
        outcome = service.migrate(cfg, runner=runner)
    finally:
        runner.shutdown()
    assert outcome.stats.objects_committed == 5
    expected = [(precompute_ephemerals, (tuple(cfg.encryption.recipients),))]
    assert asked == (expected if encrypt else [])


def test_a_runner_takes_the_workers_started_early_and_those_left_are_ended() -> None:
    start_early(3, ["bascule.migration.tasks"])
    assert len(_worker_pids(os.getpid())) == 3
    runner = ProcessRunner(2, 2)
    try:
        assert runner.started_early == 2
        pids = {runner.submit(os.getpid).result(timeout=60) for _ in range(4)}
        assert pids == set(runner.worker_pids())
        # Imported at start, before any task named the module.
        loaded = "'bascule.migration.tasks' in __import__('sys').modules"
        assert runner.submit(eval, loaded).result(timeout=60) is True
        end_early()
        assert sorted(_worker_pids(os.getpid())) == sorted(runner.worker_pids())
    finally:
        runner.shutdown()
    assert _worker_pids(os.getpid()) == []


def test_workers_started_early_are_ended_when_the_command_runs_on_threads(
    local_config: LocalConfig,
) -> None:
    start_early(2, ["bascule.migration.tasks"])
    runner = open_runner("local", local_config())
    try:
        assert isinstance(runner, runners.ThreadRunner)
        assert _worker_pids(os.getpid()) == []  # killed and reaped, not left to the end
    finally:
        runner.shutdown()


def test_bascule_migrate_takes_the_workers_it_started_before_loading_its_config(
    tmp_path: Path, local_config: LocalConfig, identity_file: tuple[Path, str]
) -> None:
    objects = _seed(tmp_path, 12)
    cfg = local_config()
    cli = [sys.executable, "-m", "bascule.cli.app", "migrate", "-c", str(cfg.source_path)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for log in (tmp_path / "state" / "logs").glob("*.jsonl")
              for line in log.read_text().splitlines()]  # fmt: skip
    [chosen] = [e for e in events if e.get("event") == "executor"]
    cores = min(usable_cores(), cfg.transfer.concurrency)
    if cores >= 2:  # what this machine allows: both outcomes are asserted
        assert (chosen["chosen"], chosen["started_early"]) == (f"processes:{cores}", cores)
    else:
        assert (chosen["chosen"], chosen["started_early"]) == ("local", 0)
    for key, data in objects.items():
        target = tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)
        assert sha256(age_decrypt(target, identity_file[0])) == sha256(data)


def _shares_then_mark(folder: str, recipient: str, *, stop: Callable[[], bool]) -> None:
    """Idle work that says when it is done: 30 shares, then a file named after the worker's
    pid (a message queued behind would stop the shares at once: this is one message)."""
    precompute_ephemerals((recipient,), 30, stop=stop)
    (Path(folder) / str(os.getpid())).write_text("done")


def test_workers_started_early_make_header_shares_until_a_runner_takes_them(
    tmp_path: Path,
) -> None:
    recipient = str(X25519Identity.generate().recipient())
    start_early(2, ["bascule.migration.tasks"])
    while_early_idle(_shares_then_mark, str(tmp_path), recipient)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.iterdir())) < 2:
        assert time.monotonic() < deadline, "the early workers ran no idle work in 60 s"
        time.sleep(0.01)
    runner = ProcessRunner(2, 1)
    try:
        ready = [runner.submit(ready_ephemerals, recipient) for _ in range(2)]  # one each
        assert [f.result(timeout=60) for f in ready] == [30, 30]
        assert {p.name for p in tmp_path.iterdir()} == {str(p) for p in runner.worker_pids()}
    finally:
        runner.shutdown()


def _wait_for(path: str) -> int:
    """A task that holds its worker until `path` exists (polled: a readiness probe)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def test_tasks_go_to_the_worker_with_the_fewest_unanswered_and_around_a_dead_one(
    tmp_path: Path,
) -> None:
    runner = ProcessRunner(2, 1)
    release = tmp_path / "release"
    try:
        held = runner.submit(_wait_for, str(release))
        # Round robin would give every other task to the held worker, and wait with it.
        free = {runner.submit(os.getpid).result(timeout=20) for _ in range(4)}
        release.write_text("go")
        busy = held.result(timeout=60)
        assert len(free) == 1 and busy not in free
        assert {busy, *free} == set(runner.worker_pids())
        with pytest.raises(WorkerLost):
            runner.submit(os._exit, 3).result(timeout=60)  # one of the two dies
        alive = {runner.submit(os.getpid).result(timeout=60) for _ in range(4)}
        assert len(alive) == 1 and alive < set(runner.worker_pids())  # the other takes all
    finally:
        runner.shutdown()

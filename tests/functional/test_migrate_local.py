"""The copy engine end to end on local folders, with the `age` CLI as the oracle."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import pytest

from bascule.errors import Interrupted
from bascule.migration import service
from bascule.runners import ThreadRunner
from tests.functional.conftest import LocalConfig, MiB, age_decrypt, sha256

R = TypeVar("R")
Ts = TypeVarTuple("Ts")
SIZES = {"empty": 0, "one": 1, "chunk": 64 * 1024, "chunk+1": 64 * 1024 + 1,
         "part": 5 * MiB, "part+1": 5 * MiB + 1, "three parts": 11 * MiB + 7}  # fmt: skip


def _seed(root: Path) -> dict[str, bytes]:
    objects = {}
    for name, size in SIZES.items():
        key = f"in/deep/é é/{name}.bin"
        data = os.urandom(size)
        path = root / "src" / "c" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        objects[key] = data
    return objects


def test_encrypted_copy_decrypts_with_age_and_rerun_sends_nothing(
    tmp_path: Path, local_config: LocalConfig, identity_file: tuple[Path, str]
) -> None:
    objects = _seed(tmp_path)
    cfg = local_config()
    outcome = service.migrate(cfg)
    assert outcome.stats.objects_committed == len(objects)
    for key, data in objects.items():
        target = tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)
        stored = target.read_bytes()
        assert len(data) < 32 or data[:32] not in stored  # ciphertext, not plaintext
        assert sha256(age_decrypt(target, identity_file[0])) == sha256(data)
    again = service.migrate(cfg)
    assert again.plan.objects == 0 and again.stats.bytes_sent == 0


def test_plain_copy_is_byte_identical(tmp_path: Path, local_config: LocalConfig) -> None:
    objects = _seed(tmp_path)
    service.migrate(local_config(encrypt=False))
    for key, data in objects.items():
        assert (tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)).read_bytes() == data


class StopAfter:
    """A runner that sets the stop event once `n` parts have completed."""

    def __init__(self, n: int, stop: threading.Event) -> None:
        self.inner = ThreadRunner(2)
        self.n = n
        self.stop = stop
        self.done = 0
        self.lock = threading.Lock()

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        future = self.inner.submit(fn, *args)
        future.add_done_callback(self._count)
        return future

    def _count(self, _: Future[Any]) -> None:
        with self.lock:
            self.done += 1
            if self.done >= self.n:
                self.stop.set()

    def shutdown(self) -> None:
        self.inner.shutdown()


def test_interrupted_run_resumes_without_resending_finished_parts(
    tmp_path: Path, local_config: LocalConfig, identity_file: tuple[Path, str]
) -> None:
    objects = _seed(tmp_path)
    cfg = local_config()
    stop = threading.Event()
    runner = StopAfter(3, stop)
    with pytest.raises(Interrupted):
        service.migrate(cfg, runner=runner, stop=stop)
    runner.shutdown()
    first_sent = service.open_journal(cfg, create=False)
    assert first_sent is not None
    sent = sum(r.bytes for r in first_sent.runs())
    first_sent.close()
    outcome = service.migrate(cfg)
    total = sum(len(d) for d in objects.values())
    assert sent > 0
    assert sent + outcome.stats.bytes_sent == total  # nothing finished was sent again
    for key, data in objects.items():
        target = tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)
        assert sha256(age_decrypt(target, identity_file[0])) == sha256(data)


def test_source_changed_mid_object_is_copied_again_with_a_fresh_key(
    tmp_path: Path, local_config: LocalConfig, identity_file: tuple[Path, str]
) -> None:
    src = tmp_path / "src" / "c" / "in" / "big.bin"
    src.parent.mkdir(parents=True)
    src.write_bytes(os.urandom(16 * MiB))
    cfg = local_config(concurrency=1, max_bytes_in_flight="5MiB")
    new = os.urandom(12 * MiB)

    class ChangeAfterFirstPart(ThreadRunner):
        changed = False

        def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
            future = super().submit(fn, *args)
            if not self.changed:
                future.result()
                src.write_bytes(new)
                self.changed = True
            return future

    outcome = service.migrate(cfg, runner=ChangeAfterFirstPart(1))
    assert outcome.stats.restarted == ["in/big.bin"]
    target = tmp_path / "dst" / "b" / "out" / "big.bin"
    assert age_decrypt(target, identity_file[0]) == new


def _count_listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from bascule.connectors.local import LocalConnector

    listed: list[str] = []
    real = LocalConnector.list

    def counting(self: LocalConnector, prefix: str = "") -> Any:
        listed.append(self.url)
        return real(self, prefix)

    monkeypatch.setattr(LocalConnector, "list", counting)
    return listed


def test_the_run_replays_the_counting_pass_instead_of_listing_again(
    tmp_path: Path, local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = _seed(tmp_path)
    listed = _count_listings(monkeypatch)
    outcome = service.migrate(local_config(encrypt=False))
    assert outcome.stats.objects_committed == len(objects)
    assert len(listed) == 2  # the source and the target, once each


def test_a_journal_written_since_the_counting_pass_is_planned_against_again(
    tmp_path: Path, local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bascule.migration.journal import Journal

    objects = _seed(tmp_path)
    listed = _count_listings(monkeypatch)
    marks = iter([0, 1])  # the counting pass saw no run; the writer sees one more
    monkeypatch.setattr(Journal, "change_mark", lambda self: next(marks))
    cfg = local_config(encrypt=False)
    cfg.journal.parent.mkdir(parents=True, exist_ok=True)
    Journal(cfg.journal, service.config_fingerprint(cfg)).close()  # a journal to read
    outcome = service.migrate(cfg)
    assert outcome.stats.objects_committed == len(objects)
    assert len(listed) == 4  # planned again by the run


class _Recording:
    """A ProgressSink that notes, for each total it is given, whether the journal existed."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.totals: list[tuple[int, int, bool]] = []
        self.advanced = 0
        self.done = 0

    def add_total(self, objects: int, nbytes: int) -> None:
        self.totals.append((objects, nbytes, self.journal.exists()))

    def advance(self, nbytes: int) -> None:
        self.advanced += nbytes

    def object_done(self, key: str) -> None:
        self.done += 1


def test_the_totals_reach_the_progress_bar_while_the_counting_pass_lists(
    tmp_path: Path, local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bascule.migration import progress

    objects = _seed(tmp_path)
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)  # every count handed on at once
    cfg = local_config(encrypt=False)
    sink = _Recording(cfg.journal)
    outcome = service.migrate(cfg, progress=sink)
    assert outcome.stats.objects_committed == len(objects)
    # Handed on object by object, before the journal (made after the counting pass) exists;
    # what the run adds at the end (the plan's difference, none here) comes after.
    counted = [t for t in sink.totals if t[0]]
    assert len(counted) == len(objects)
    assert not any(existed for _, _, existed in counted)
    assert sum(o for o, _, _ in sink.totals) == sink.done == len(objects)
    assert sum(b for _, b, _ in sink.totals) == sink.advanced == sum(map(len, objects.values()))

"""SIGKILL `bascule migrate` at chosen and at random instants; every re-run completes, the
target decrypts to the source, nothing finished is sent twice beyond what was in flight, and
no multipart upload is left behind."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.proxy import FaultPlan, FaultProxy
from tests.integration.cloud import CloudSetup, MiB, sha256

pytestmark = pytest.mark.slow
BASCULE = [sys.executable, "-m", "bascule.cli.app"]
PART = 5 * MiB


@pytest.fixture()
def cloud(cloud_moto: CloudSetup) -> CloudSetup:
    return cloud_moto


def _seed(cloud: CloudSetup, rng: random.Random, large: int, small: int) -> dict[str, bytes]:
    objects = {f"snds/large/{i}.parquet": rng.randbytes(3 * PART + i + 1) for i in range(large)}
    objects.update({f"snds/small/{i:03d} é.csv": rng.randbytes(rng.randint(0, 9000))
                    for i in range(small)})  # fmt: skip
    for key, data in objects.items():
        cloud.upload(key, data)
    return objects


def _config(cloud: CloudSetup, endpoint: str, encrypt: bool = True, **transfer: object) -> Path:
    data = cloud.config_dict(encrypt=encrypt, **transfer)
    data["endpoints"]["ovh-gra"]["endpoint_url"] = endpoint
    return cloud.write_config(data)


def _start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*BASCULE, "migrate", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _done_bytes(journal: Path) -> int:
    """Plaintext bytes the journal holds as done: committed objects and recorded parts."""
    if not journal.exists():
        return 0
    db = sqlite3.connect(journal)
    try:
        committed = db.execute(
            "SELECT COALESCE(SUM(source_size), 0) FROM objects WHERE state='committed'"
        ).fetchone()[0]
        parts = db.execute(
            "SELECT COALESCE(SUM(p.size), 0) FROM parts p JOIN objects o ON o.id = p.object_id "
            "WHERE o.state = 'in_progress'"
        ).fetchone()[0]
    finally:
        db.close()
    return int(committed) + int(parts)


def _last_run_bytes(journal: Path) -> int:
    db = sqlite3.connect(journal)
    try:
        return int(db.execute("SELECT bytes FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    finally:
        db.close()


def _finish(config: Path) -> None:
    proc = subprocess.run([*BASCULE, "migrate", "-c", str(config)], capture_output=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()


def _check_target(cloud: CloudSetup, objects: dict[str, bytes], encrypt: bool = True) -> None:
    for key, data in objects.items():
        target = key.replace("snds/", "hdh/", 1)
        got = cloud.decrypt_target(target) if encrypt else cloud.target_bytes(target)
        assert sha256(got) == sha256(data), key
    uploads = cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket).get("Uploads", [])
    assert uploads == []


def _is_list(method: str, path: str) -> bool:
    return method == "GET" and "list-type=2" in path


def _is_part2(method: str, path: str) -> bool:
    return method == "PUT" and "partNumber=2&" in path + "&"


def _is_commit(method: str, path: str) -> bool:
    return method == "POST" and "uploadId=" in path


PHASES: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "listing": (_is_list, False),
    "between-parts": (_is_part2, False),  # part 1 journaled, part 2 not yet stored
    "mid-part": (_is_part2, True),  # part 2 stored by the server, its answer not yet read
    "commit": (_is_commit, False),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_kill_at_each_phase_then_resume(cloud: CloudSetup, phase: str) -> None:
    objects = _seed(cloud, random.Random(phase), large=1, small=3)
    hold, after = PHASES[phase]
    plan = FaultPlan(rate=0, hold=hold, hold_after_forward=after)
    proxy = FaultProxy(cloud.s3.endpoint_url, plan).start()
    config = _config(cloud, proxy.url, concurrency=1, max_bytes_in_flight="5MiB")
    journal = cloud.tmp_path / "state" / "journal.db"
    try:
        proc = _start(config)
        assert proxy.holding.wait(timeout=60), "the held request never came"
        _kill(proc)
        done = _done_bytes(journal)
        proxy.release()
        _finish(config)
    finally:
        proxy.release()
        proxy.stop()
    total = sum(len(d) for d in objects.values())
    resent = _last_run_bytes(journal) - (total - done)
    assert 0 <= resent <= PART  # at most the one part that was in flight
    _check_target(cloud, objects)


SCENARIOS = [
    ("large-encrypted", True, 3, 2, 7),
    ("small-encrypted", True, 0, 80, 7),
    ("mixed-plain", False, 2, 40, 7),
]


def _check_prefix(cloud: CloudSetup, objects: dict[str, bytes], prefix: str, encrypt: bool) -> None:
    for key, value in objects.items():
        target = key.replace("snds/", prefix, 1)
        got = cloud.decrypt_target(target) if encrypt else cloud.target_bytes(target)
        assert sha256(got) == sha256(value), (prefix, key)


def _round_config(cloud: CloudSetup, name: str, encrypt: bool, tag: str) -> tuple[Path, str]:
    """A config writing to a prefix and a journal of their own; and that prefix."""
    prefix = f"hdh/{name}/{tag}/"
    data = cloud.config_dict(encrypt=encrypt, concurrency=3, max_bytes_in_flight="16MiB")
    data["datasets"][0]["target"]["prefix"] = prefix
    data["journal"] = f"state/{name}-{tag}.db"
    return cloud.write_config(data), prefix


def _kill_window(config: Path) -> tuple[float, float]:
    """Seconds after the start within which a kill lands in a run of `config`: from most of
    a run with nothing to copy (start-up, listing, plan) to the end of a whole run, both
    timed here (so that the instants follow this machine's speed, not a fixed guess)."""
    started = time.monotonic()
    _finish(config)
    whole = time.monotonic() - started
    started = time.monotonic()
    _finish(config)  # everything is copied: only start-up, listing and plan are left
    idle = time.monotonic() - started
    return 0.8 * idle, max(whole, idle + 0.05)


def test_kill_matrix_random_instants(cloud: CloudSetup) -> None:
    """At least 20 SIGKILLs at seeded random instants across scenarios, each resumed; a
    round whose run finished before its kill is checked, then a new round starts. The
    instants are drawn within each scenario's run, as timed on this machine."""
    rng = random.Random(20261128)
    kills = 0
    for name, encrypt, large, small, quota in SCENARIOS:
        objects = _seed(cloud, random.Random(name), large, small)
        config, prefix = _round_config(cloud, name, encrypt, "timing")
        low, high = _kill_window(config)
        _check_prefix(cloud, objects, prefix, encrypt)
        got = 0
        # A run that ends before its instant is no kill: then another round.
        for attempt in range(8 * quota):
            if got >= quota:
                break
            config, prefix = _round_config(cloud, name, encrypt, str(attempt))
            for _ in range(3):  # up to three kills in one round, each resumed by the next run
                proc = _start(config)
                time.sleep(rng.uniform(low, high))
                if proc.poll() is not None:
                    break
                _kill(proc)
                got += 1
            _finish(config)
            _check_prefix(cloud, objects, prefix, encrypt)
        kills += got
        for key in objects:
            cloud.blobs.get_blob_client(cloud.container, key).delete_blob()
    print(f"kill matrix: {kills} SIGKILLs, each resumed to a verified target")
    assert kills >= 20
    uploads = cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket).get("Uploads", [])
    assert uploads == []

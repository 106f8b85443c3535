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

from bascule.age.sizes import header_length
from bascule.migration.plan import plan_parts
from bascule.sandbox.servers import azurite_connection_string
from tests.faults.proxy import FAULTS, FaultPlan, FaultProxy
from tests.integration.cloud import ENV, CloudSetup, MiB, sha256

pytestmark = pytest.mark.slow
BASCULE = [sys.executable, "-m", "bascule.cli.app"]
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
def cloud(cloud_moto: CloudSetup) -> CloudSetup:
    return cloud_moto


@contextmanager
def proxies(cloud: CloudSetup, source: FaultPlan, target: FaultPlan) -> Iterator[Proxies]:
    """Both proxies started; the environment's Azure connection string points at the source
    proxy (the S3 endpoint is set in the config by `proxied_config`)."""
    src = RecordingProxy(f"http://127.0.0.1:{cloud.azurite.port}", source)
    tgt = RecordingProxy(cloud.s3.endpoint_url, target)
    src.start()
    tgt.start()
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


def seed(cloud: CloudSetup, rng: random.Random, small: int = 0) -> dict[str, bytes]:
    """Multi-part objects (3 and 2 parts) and small ones (incl. empty), plus `small` more."""
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
    sizes.update({f"snds/many/{i:02d}.csv": rng.randint(1, 90_000) for i in range(small)})
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
    header_len = header_length(1)
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
    objects = seed(cloud, random.Random(10), small=40)
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
            "verify_err": verify.stderr[-300:],
        },
    )
    assert sum(px.source.injected.values()) + sum(px.target.injected.values()) >= 5
    check_target(cloud, objects)
    check_parts(cloud, journal_of(cloud), objects)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- 2. Retry-After, measured at the proxies --------------------------------------------------


def retry_gaps(proxy: RecordingProxy, kind: str) -> list[float]:
    """For each request answered with `kind`, seconds until the same request came again."""
    gaps = []
    arrivals = list(proxy.arrivals)
    for i, first in enumerate(arrivals):
        if first.fault != kind:
            continue
        again = next(
            a for a in arrivals[i + 1 :] if (a.method, a.path) == (first.method, first.path)
        )
        gaps.append(again.at - first.at)
    return gaps


def test_retry_after_is_honoured_on_both_sides(cloud: CloudSetup) -> None:
    """429 + Retry-After: 2 on two source reads and two target writes; one part at a time,
    so the next identical request is the retry. Backoff alone would wait under 0.5 s."""
    objects = seed(cloud, random.Random(2))
    wait_s = 2
    src_plan = FaultPlan(rate=1.0, kinds=("retry_after",), retry_after_s=wait_s,
                         flavour="azure", max_faults=2, applies=blob_read)  # fmt: skip
    tgt_plan = FaultPlan(rate=1.0, kinds=("retry_after",), retry_after_s=wait_s,
                         flavour="s3", max_faults=2, applies=target_write)  # fmt: skip
    with proxies(cloud, src_plan, tgt_plan) as px:
        config = proxied_config(cloud, px.target.url, concurrency=1, max_bytes_in_flight="5MiB")
        proc = run_cli("migrate", "-c", str(config))
        assert proc.returncode == 0, proc.stderr
        gaps = {"source": retry_gaps(px.source, "retry_after"),
                "target": retry_gaps(px.target, "retry_after")}  # fmt: skip
    summarise("Retry-After", {"asked_s": wait_s, "measured_gaps_s": gaps})
    assert len(gaps["source"]) == 2 and len(gaps["target"]) == 2
    assert all(gap >= wait_s for side in gaps.values() for gap in side), gaps
    check_target(cloud, objects)


# --- 3. Attempt budget spent: exit 3, one line; a later run resumes ---------------------------


def attempts_in_journal(journal: Path) -> int:
    db = sqlite3.connect(journal)
    try:
        return int(db.execute("SELECT COALESCE(SUM(count), 0) FROM attempts").fetchone()[0])
    finally:
        db.close()


def is_create(method: str, path: str) -> bool:
    return method == "POST" and path.endswith("?uploads")


def test_attempt_budget_spent_exits_3_then_resumes(cloud: CloudSetup) -> None:
    """Every PUT on the target refused, transfer.max_attempts 2: exit 3, the error on one
    line; once the provider recovers, the next run resumes the uploads the first one opened
    (no new CreateMultipartUpload for them) and completes."""
    objects = seed(cloud, random.Random(3))
    tgt_plan = FaultPlan(rate=1.0, kinds=("throttle", "error500"), flavour="s3",
                         applies=target_write)  # fmt: skip
    with proxies(cloud, FaultPlan(rate=0.0, flavour="azure"), tgt_plan) as px:
        config = proxied_config(cloud, px.target.url, concurrency=2, max_attempts=2)
        first = run_cli("migrate", "-c", str(config))
        puts = Counter(a.path for a in px.target.arrivals if a.method == "PUT")
        opened = {a.path for a in px.target.arrivals if is_create(a.method, a.path)}
        seen = len(px.target.arrivals)
        recorded = attempts_in_journal(journal_of(cloud))
        px.target.plan.rate = 0.0  # the provider recovers
        second = run_cli("migrate", "-c", str(config))
        reopened = {a.path for a in px.target.arrivals[seen:] if is_create(a.method, a.path)}
    lines = error_lines(first)
    summarise(
        "attempt budget",
        {
            "first_rc": first.returncode,
            "stderr_lines": len(lines),
            "last_line": lines[-1] if lines else "",
            "http_puts_per_part(count: parts)": sorted(Counter(puts.values()).items()),
            "attempts_in_journal": recorded,
            "second_rc": second.returncode,
            "uploads_opened_again": len(opened & reopened),
        },
    )
    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    assert lines[-1].startswith("error: s3://") and "hdh/big/" in lines[-1], first.stderr
    assert min(puts.values()) >= 2  # the budget was spent before stopping
    assert opened and not opened & reopened  # resumed, not started again
    assert second.returncode == 0, second.stderr
    check_target(cloud, objects)
    check_parts(cloud, journal_of(cloud), objects)
    assert len(lines) == 1, first.stderr  # one line: the event log stays in the JSON file
    assert set(puts.values()) == {2}  # max_attempts 2: two HTTP PUTs per part, no SDK retry


def test_botocore_adds_no_retry_of_its_own(cloud: CloudSetup) -> None:
    """transfer.max_attempts 1 and one 500 on one PUT: bascule's budget allows no retry, so
    the run must stop (exit 3) after exactly one HTTP request for that part."""
    seed(cloud, random.Random(6))
    tgt_plan = FaultPlan(rate=1.0, kinds=("error500",), flavour="s3", max_faults=1,
                         applies=target_write)  # fmt: skip
    with proxies(cloud, FaultPlan(rate=0.0, flavour="azure"), tgt_plan) as px:
        config = proxied_config(cloud, px.target.url, concurrency=1, max_attempts=1)
        proc = run_cli("migrate", "-c", str(config))
        faulted = next(a for a in px.target.arrivals if a.fault)
        same = (faulted.method, faulted.path)
        tries = sum(1 for a in px.target.arrivals if (a.method, a.path) == same)
    assert (tries, proc.returncode) == (1, 3), proc.stderr


def test_the_azure_sdk_adds_no_retry_of_its_own_on_a_cut_download(cloud: CloudSetup) -> None:
    """transfer.max_attempts 1 and one source body reset mid-way: the run must stop (exit 3)
    after exactly one Get Blob for that object. (azure-storage-blob's downloader retried a
    cut download three times on its own, even with retry_total=0.)"""
    seed(cloud, random.Random(7))

    def one_object(method: str, path: str) -> bool:  # one request reads it whole
        return blob_read(method, path) and path.split("?")[0].endswith("/small/d.jsonl")

    src_plan = FaultPlan(rate=1.0, kinds=("reset",), flavour="azure", max_faults=1,
                         applies=one_object)  # fmt: skip
    with proxies(cloud, src_plan, FaultPlan(rate=0.0)) as px:
        config = proxied_config(cloud, px.target.url, concurrency=1, max_attempts=1)
        proc = run_cli("migrate", "-c", str(config))
        faulted = next(a for a in px.source.arrivals if a.fault)
        same = (faulted.method, faulted.path)
        tries = sum(1 for a in px.source.arrivals if (a.method, a.path) == same)
    assert (tries, proc.returncode) == (1, 3), proc.stderr


# --- 4. A truncated or reset source body is never committed -----------------------------------


def test_truncated_or_reset_source_body_never_committed(cloud: CloudSetup) -> None:
    objects = seed(cloud, random.Random(4), small=10)
    src_plan = FaultPlan(rate=1.0, kinds=("truncate", "reset"), seed=4, flavour="azure",
                         applies=blob_read)  # fmt: skip
    with proxies(cloud, src_plan, FaultPlan(rate=0.0)) as px:
        config = proxied_config(cloud, px.target.url, concurrency=4, max_attempts=2)
        broken = run_cli("migrate", "-c", str(config))
        # Every body was cut: whatever the target holds now must still be whole.
        committed = cloud.target_keys("hdh/")
        for key in committed:
            source = key.replace("hdh/", "snds/", 1)
            assert sha256(cloud.decrypt_target(key)) == sha256(objects[source]), key
        px.source.plan.rate = 0.3
        # 30% of reads cut and two attempts each: a run stops at an object's second cut
        # read (about one object in eleven), so several runs are needed.
        runs = migrate_until_done(config, max_runs=8)
        gets = Counter(a.path for a in px.source.arrivals if a.method == "GET" and a.fault)
    summarise(
        "truncated source",
        {
            "broken_rc": broken.returncode,
            "committed_while_every_body_was_cut": committed,
            "injected": dict(px.source.injected),
            "later_runs": len(runs),
            "journal_retries": attempts_in_journal(journal_of(cloud)),
            "faulted_gets_per_path": sorted(Counter(gets.values()).items()),
        },
    )
    assert broken.returncode == 3, broken.stderr
    assert set(committed) <= {"hdh/small/empty.csv"}  # an empty object reads no body
    assert px.source.injected["truncate"] >= 3 and px.source.injected["reset"] >= 3
    check_target(cloud, objects)
    check_parts(cloud, journal_of(cloud), objects)


# --- 5. A transient fault on a call the coordinator makes itself -------------------------------


def is_commit(method: str, path: str) -> bool:
    return method == "POST" and "uploadId=" in path


def test_one_fault_on_commit_is_retried_within_the_run(cloud: CloudSetup) -> None:
    objects = seed(cloud, random.Random(5))
    # Two faults on the commit: bascule's own budget (5 attempts) must absorb both.
    tgt_plan = FaultPlan(rate=1.0, kinds=("error500",), flavour="s3", max_faults=2,
                         applies=is_commit)  # fmt: skip
    with proxies(cloud, FaultPlan(rate=0.0, flavour="azure"), tgt_plan) as px:
        config = proxied_config(cloud, px.target.url)
        proc = run_cli("migrate", "-c", str(config))
        assert px.target.injected["error500"] == 2
    assert proc.returncode == 0, proc.stderr
    check_target(cloud, objects)

"""No secret and no plaintext leaves where it belongs, through the whole CLI pipeline.

The source holds plaintext markers (``PLAINTEXT-MARKER-<random>``) in CSV rows, Parquet
strings (uncompressed, so that the marker is in the file's bytes), JSON lines and a binary,
in a multi-part object and in small ones. The pipeline runs with the servers' real test
credentials, the Azurite account key and an age identity: a first `migrate` through
fault-injecting proxies (errors, resets, throttling: the error paths are where secrets leak),
then `migrate`, `verify --level full --rows --report FILE` and `plan --json`, a rehearsal of a
small runbook and the evidence pack of that rehearsal (`evidence keygen` and `evidence pack`).

Then every byte that bascule wrote or said is scanned: stdout and stderr of every command,
every log file under the journal directory's ``logs/``, every row of every journal table
(all columns, as bytes) and the raw journal, WAL and shared-memory files, the evidence
report, every file of the evidence pack, the config, and every target object (raw bytes and
metadata, read with boto3).
Zero secrets anywhere; zero markers on the encrypted target and in everything else; and the
markers are found in the target objects of the ``encrypt: false`` dataset, which proves that
the scan sees what it looks for.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bascule.age.keys import bech32_decode
from bascule.config import load_config
from bascule.endpoints import EndpointRef, build_connector
from bascule.errors import ConfigError
from bascule.sandbox.servers import AZURITE_KEY, azurite_connection_string
from tests.faults.proxy import FaultPlan, FaultProxy
from tests.integration.cloud import ENV, CloudSetup, MiB

BASCULE = [sys.executable, "-m", "bascule.cli.app"]
MARKER = f"PLAINTEXT-MARKER-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Needle:
    name: str
    value: bytes


@dataclass(frozen=True)
class Hit:
    where: str
    needle: str


@pytest.fixture()
def cloud(cloud_moto: CloudSetup) -> CloudSetup:
    return cloud_moto


# --- the source: plaintext markers in every format ------------------------------------------


def csv_bytes(rows: int) -> bytes:
    lines = ["id,name,note"] + [f"{i},patient-{i:07d},{MARKER}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def parquet_bytes(rows: int) -> bytes:
    table = pa.table({"id": list(range(rows)), "note": [f"{MARKER}-{i}" for i in range(rows)]})
    out = io.BytesIO()
    pq.write_table(table, out, compression="none", use_dictionary=False)
    return out.getvalue()


def jsonl_bytes(rows: int) -> bytes:
    return "".join(json.dumps({"id": i, "note": MARKER}) + "\n" for i in range(rows)).encode()


def binary_bytes(rng: random.Random, size: int) -> bytes:
    data = bytearray(rng.randbytes(size))
    for offset in (0, size // 2, size - len(MARKER)):
        data[offset : offset + len(MARKER)] = MARKER.encode()
    return bytes(data)


def seed(cloud: CloudSetup) -> dict[str, bytes]:
    rng = random.Random(5)
    objects = {
        "snds/dcir/big.csv": csv_bytes(200_000),  # ~7 MiB: two 5 MiB parts
        "snds/dcir/small.csv": csv_bytes(50),
        "snds/pmsi/t.parquet": parquet_bytes(2_000),
        "snds/pmsi/t.jsonl": jsonl_bytes(300),
        "snds/raw/blob.bin": binary_bytes(rng, 300_000),
        "open/ref.csv": csv_bytes(40),
        "open/ref.parquet": parquet_bytes(100),
        "open/ref.bin": binary_bytes(rng, 10_000),
    }
    assert len(objects["snds/dcir/big.csv"]) > 5 * MiB
    for key, data in objects.items():
        assert MARKER.encode() in data, key
        cloud.upload(key, data)
    return objects


def write_config(
    cloud: CloudSetup, name: str, target_url: str | None = None, **transfer: Any
) -> Path:
    data = cloud.config_dict(encrypt=True, **transfer)
    data["datasets"].append(
        {"name": "open", "source": {"endpoint": "azure-fc", "container": cloud.container,
                                    "prefix": "open/"},
         "target": {"endpoint": "ovh-gra", "bucket": cloud.bucket, "prefix": "open/"},
         "encrypt": False}
    )  # fmt: skip
    if target_url:
        data["endpoints"]["ovh-gra"]["endpoint_url"] = target_url
    path = cloud.tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


# --- what must never appear ------------------------------------------------------------------


def secret_needles(cloud: CloudSetup) -> list[Needle]:
    identity = cloud.identity.to_secret_string()
    needles = [
        Needle("s3 secret access key", cloud.s3.secret_access_key.encode()),
        Needle("s3 access key id", cloud.s3.access_key_id.encode()),
        Needle("azurite account key", AZURITE_KEY.encode()),
        Needle("azurite account key (bytes)", base64.b64decode(AZURITE_KEY)),
        Needle("age identity", identity.encode()),
        Needle("age identity (lowercase)", identity.lower().encode()),
        Needle("age identity (bytes)", bech32_decode(identity)[1]),
    ]
    key_file = cloud.tmp_path / "state" / "journal.db.key"
    if key_file.exists():
        needles.append(Needle("journal wrapping key", key_file.read_bytes()))
    signing_key = cloud.tmp_path / "evidence_ed25519"
    if signing_key.exists():
        needles.append(Needle("evidence signing key", signing_key.read_bytes()))
    return needles


def scan(where: str, blob: bytes, needles: list[Needle]) -> list[Hit]:
    return [Hit(where, n.name) for n in needles if n.value in blob]


def journal_rows(journal: Path) -> Iterator[tuple[str, bytes]]:
    """(table.column, value as bytes) for every cell of every table."""
    db = sqlite3.connect(journal)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cursor = db.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    raw = value if isinstance(value, bytes) else str(value).encode()
                    yield f"journal {table}.{column}", raw
    finally:
        db.close()


def bascule_outputs(
    cloud: CloudSetup, procs: list[subprocess.CompletedProcess[bytes]]
) -> Iterator[tuple[str, bytes]]:
    """Everything bascule said or wrote outside the target, by where it is."""
    for i, proc in enumerate(procs):
        yield f"command {i} ({' '.join(proc.args[3:5])}) stdout", proc.stdout
        yield f"command {i} ({' '.join(proc.args[3:5])}) stderr", proc.stderr
    state = cloud.tmp_path / "state"
    logs = sorted((state / "logs").glob("*"))
    assert logs, "no log file was written"
    for path in logs:
        yield f"log {path.name}", path.read_bytes()
    for path in sorted(state.glob("journal.db*")):
        if path.name != "journal.db.key":  # the wrapping key itself; a needle, not a haystack
            yield f"file {path.name}", path.read_bytes()
    yield from journal_rows(state / "journal.db")
    yield "report", (cloud.tmp_path / "evidence" / "verify.json").read_bytes()
    pack = sorted((cloud.tmp_path / "evidence" / "pack").iterdir())
    assert "manifest.jsonl" in [p.name for p in pack]
    for path in pack:
        yield f"pack {path.name}", path.read_bytes()
    for path in sorted(cloud.tmp_path.glob("*.yaml")):
        yield f"config {path.name}", path.read_bytes()


SCAN_RUNBOOK = """\
runbook: scan
phases:
  - name: preflight
    steps:
      - {name: preflight, kind: check}
      - {name: approve, kind: approve, prompt: "go?"}
"""


def evidence_pack(cloud: CloudSetup, config: Path) -> list[subprocess.CompletedProcess[bytes]]:
    """Rehearse a small runbook, then pack its evidence (the manifest lists the copies)."""
    book = cloud.tmp_path / "scan-runbook.yaml"
    book.write_text(SCAN_RUNBOOK)
    key = cloud.tmp_path / "evidence_ed25519"
    pack = cloud.tmp_path / "evidence" / "pack"
    return [
        run("runbook", "rehearse", str(book), "-c", str(config)),
        run("evidence", "keygen", "--private-key", str(key)),
        run("evidence", "pack", "-c", str(config), "-o", str(pack), "--key", str(key)),
    ]


def target_objects(cloud: CloudSetup) -> Iterator[tuple[str, bytes]]:
    for key in cloud.target_keys():
        head = cloud.s3_client.head_object(Bucket=cloud.bucket, Key=key)
        yield key, cloud.target_bytes(key) + json.dumps(head.get("Metadata", {})).encode()


# --- the pipeline ----------------------------------------------------------------------------


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*BASCULE, *args], capture_output=True, timeout=300, env=env)


def faulty_first_run(cloud: CloudSetup) -> subprocess.CompletedProcess[bytes]:
    """A migrate through proxies that fail half of the data requests, with a budget of two
    attempts: errors are logged, journaled and printed (the run may stop with exit 3)."""
    src = FaultProxy(
        f"http://127.0.0.1:{cloud.azurite.port}",
        FaultPlan(rate=0.6, kinds=("error500", "throttle", "reset", "truncate"), seed=7,
                  flavour="azure", applies=lambda method, path: method == "GET"
                  and "comp=list" not in path),
    ).start()  # fmt: skip
    tgt = FaultProxy(
        cloud.s3.endpoint_url,
        FaultPlan(
            rate=0.5,
            kinds=("error500", "throttle", "reset"),
            seed=8,
            flavour="s3",
            applies=lambda method, path: method == "PUT",
        ),
    ).start()
    try:
        config = write_config(cloud, "faulty.yaml", tgt.url, max_attempts=2)
        env = dict(os.environ, **{ENV["azure"]: azurite_connection_string(src.port)})
        proc = run("migrate", "-c", str(config), env=env)
    finally:
        src.stop()
        tgt.stop()
    assert sum(src.injected.values()) and sum(tgt.injected.values())
    assert proc.returncode in (0, 3), proc.stderr.decode()
    return proc


@pytest.mark.slow
def test_no_secret_and_no_plaintext_anywhere(cloud: CloudSetup) -> None:
    objects = seed(cloud)
    procs = [faulty_first_run(cloud)]
    config = write_config(cloud, "bascule.yaml")
    report = cloud.tmp_path / "evidence" / "verify.json"
    procs.append(run("migrate", "-c", str(config)))
    procs.append(run("verify", "-c", str(config), "--level", "full", "--rows",
                     "--report", str(report)))  # fmt: skip
    procs.append(run("plan", "-c", str(config), "--json"))
    procs += evidence_pack(cloud, config)
    for proc in procs[1:]:
        assert proc.returncode == 0, (proc.args, proc.stdout.decode(), proc.stderr.decode())

    needles = secret_needles(cloud)
    marker = [Needle("plaintext marker", MARKER.encode())]
    hits: list[Hit] = []
    scanned = 0
    seen: dict[str, bytes] = {}
    for where, blob in bascule_outputs(cloud, procs):
        hits += scan(where, blob, needles + marker)
        scanned += len(blob)
        kind = where.split(" ")[0]
        seen[kind] = seen.get(kind, b"") + blob
    found_in_plain = []
    for key, blob in target_objects(cloud):
        hits += scan(f"target {key}", blob, needles)
        scanned += len(blob)
        if key.startswith("hdh/"):
            hits += scan(f"target {key}", blob, marker)
        elif MARKER.encode() in blob:
            found_in_plain.append(key)
    print(f"\n[secret scan] {scanned} bytes scanned, {len(needles)} secrets, hits={hits}")
    assert hits == []
    # The scan saw what it should: journal rows and logs name the objects, the faulty run's
    # errors were logged, the report lists the objects.
    assert all(b"hdh/dcir/big.csv" in seen[kind] for kind in ("journal", "log", "report", "pack"))
    assert b"part.failed" in seen["log"]
    assert sorted(found_in_plain) == sorted(k for k in objects if k.startswith("open/"))
    assert sorted(cloud.target_keys("hdh/")) == sorted(
        k.replace("snds/", "hdh/", 1) for k in objects if k.startswith("snds/")
    )


# --- plain HTTP to a host that is not loopback -----------------------------------------------


def test_plain_http_s3_endpoint_refused_by_the_cli(cloud: CloudSetup) -> None:
    config = write_config(cloud, "insecure.yaml", "http://s3.gra.example.eu")
    proc = run("plan", "-c", str(config))
    lines = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "plain HTTP to s3.gra.example.eu is refused" in lines[0]
    data = yaml.safe_load(config.read_text())
    data["endpoints"]["ovh-gra"]["allow_insecure_http"] = True
    config.write_text(yaml.safe_dump(data))
    assert load_config(config).endpoints["ovh-gra"].kind == "s3"


REMOTE_HTTP = "http://blob.example.eu/acct"


def azure_config(tmp_path: Path, endpoint: dict[str, str]) -> Path:
    data = {
        "project": "p",
        "endpoints": {"az": {"kind": "azure-blob", **endpoint},
                      "local": {"kind": "local", "path": str(tmp_path)}},
        "datasets": [{"name": "d", "source": {"endpoint": "az", "container": "c"},
                      "target": {"endpoint": "local"}, "encrypt": False}],
    }  # fmt: skip
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plain_http_azure_account_url_refused(tmp_path: Path) -> None:
    path = azure_config(tmp_path, {"account_url": REMOTE_HTTP})
    with pytest.raises(ConfigError, match="plain HTTP"):
        load_config(path)


def test_plain_http_azure_connection_string_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={REMOTE_HTTP};"
    )
    monkeypatch.setenv("T_REMOTE_AZURE", conn)
    path = azure_config(tmp_path, {"connection_string_env": "T_REMOTE_AZURE"})
    with pytest.raises(ConfigError, match="plain HTTP"):
        cfg = load_config(path)
        build_connector(EndpointRef.of("az", cfg.endpoints["az"], "c"))

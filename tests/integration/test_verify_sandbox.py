"""Acceptance of `verify` on real servers: Azurite as the Azure source, `rclone serve s3` as
the sovereign target, a real encrypted migration, then tampering through the S3 API."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from azure.storage.blob import BlobServiceClient

from bascule.age.stream import X25519Identity, load_identities, write_identity_file
from bascule.config import Config, load_config
from bascule.connectors.base import ByteRange, Capabilities, Connector, ObjectInfo
from bascule.endpoints import EndpointRef, clear_cache, connector
from bascule.migration import service
from bascule.verification.reread import count_target_rows
from bascule.verification.verify import verify
from tests.conftest import AzuriteServer, S3Server

MiB = 1024 * 1024
ENV = {"AZ": "VERIFY_TEST_AZ_CONN", "KEY": "VERIFY_TEST_S3_KEY", "SECRET": "VERIFY_TEST_S3_SECRET",
       "IDENTITY": "VERIFY_TEST_AGE_IDENTITY"}  # fmt: skip
PARQUET_ROWS = 20_000


def _parquet() -> bytes:
    # random strings: the file stays larger than the age reader's first window
    rng = os.urandom(PARQUET_ROWS * 8)
    labels = [rng[i * 8 : i * 8 + 8].hex() for i in range(PARQUET_ROWS)]
    table = pa.table({"id": list(range(PARQUET_ROWS)), "label": labels})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none")
    return sink.getvalue()


CSV = 'BEN_NIR_PSA,LIBELLE\n1,"Hôpital\nNord"\n2,"dit ""X"""\n3,fin'.encode()


def _dataset() -> dict[str, bytes]:
    return {
        "snds/ER_PRS_F.parquet": _parquet(),
        "snds/IR_BEN_R.csv": CSV,
        "snds/events.jsonl": b'{"id": 1}\n{"id": 2}\n{"id": 3}\n',
        "snds/scan-0001.dcm": os.urandom(300_000),
        "snds/empty.bin": b"",
        "snds/extraction.zip": os.urandom(11 * MiB + 5),  # three 5 MiB parts
    }


@dataclass
class Sandbox:
    cfg: Config
    path: Path
    env: dict[str, str]
    bucket: str
    s3: Any
    objects: dict[str, bytes]


@pytest.fixture()
def sandbox(
    azurite: AzuriteServer, rclone_s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox]:
    clear_cache()
    container, bucket = f"src-{uuid.uuid4().hex[:12]}", f"dst-{uuid.uuid4().hex[:12]}"
    objects = _dataset()
    with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        client = blobs.create_container(container)
        for key, data in objects.items():
            client.upload_blob(key, data)
    s3 = boto3.client(
        "s3", endpoint_url=rclone_s3.endpoint_url, region_name=rclone_s3.region,
        aws_access_key_id=rclone_s3.access_key_id,
        aws_secret_access_key=rclone_s3.secret_access_key,
    )  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    identity = X25519Identity.generate()
    key_file = tmp_path / "identity.txt"
    write_identity_file(key_file, identity, "2026-01-01T00:00:00Z")
    env = {ENV["AZ"]: azurite.connection_string, ENV["KEY"]: rclone_s3.access_key_id,
           ENV["SECRET"]: rclone_s3.secret_access_key, ENV["IDENTITY"]: str(key_file)}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = {
        "project": "verify-sandbox",
        "journal": "state/journal.db",
        "endpoints": {
            "azure-fc": {"kind": "azure-blob", "connection_string_env": ENV["AZ"]},
            "ovh-gra": {"kind": "s3", "endpoint_url": rclone_s3.endpoint_url,
                        "region": rclone_s3.region, "access_key_id_env": ENV["KEY"],
                        "secret_access_key_env": ENV["SECRET"]},
        },
        "encryption": {"recipients": [str(identity.recipient())],
                       "identity_file_env": ENV["IDENTITY"]},
        "transfer": {"part_size": "5MiB", "concurrency": 4},
        "datasets": [{"name": "snds", "source": {"endpoint": "azure-fc", "container": container,
                                                 "prefix": "snds/"},
                      "target": {"endpoint": "ovh-gra", "bucket": bucket, "prefix": "hdh/"}}],
    }  # fmt: skip
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)
    service.migrate(cfg)
    yield Sandbox(cfg, path, env, bucket, s3, objects)
    s3.close()
    clear_cache()


def _cli(box: Sandbox, *args: str, drop: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != drop}
    env.update({k: v for k, v in box.env.items() if k != drop})
    return subprocess.run(
        [sys.executable, "-m", "bascule.cli.app", "verify", "-c", str(box.path), *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_clean_migration_verifies_full_with_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    report_file = tmp_path / "evidence" / "verify.json"
    done = _cli(sandbox, "--level", "full", "--rows", "--report", str(report_file))
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(report_file.read_text())
    assert len(doc["records"]) == len(sandbox.objects)
    assert {r["verdict"] for r in doc["records"]} == {"verified"}
    rows = {r["source_key"]: (r["source_rows"], r["target_rows"]) for r in doc["records"]}
    source_parquet = pq.read_metadata(io.BytesIO(sandbox.objects["snds/ER_PRS_F.parquet"]))
    assert rows["snds/ER_PRS_F.parquet"] == (source_parquet.num_rows,) * 2
    by_csv = list(csv.reader(io.StringIO(CSV.decode(), newline="")))
    assert rows["snds/IR_BEN_R.csv"] == (len(by_csv) - 1,) * 2
    assert rows["snds/events.jsonl"] == (3, 3)
    zipped = next(r for r in doc["records"] if r["source_key"] == "snds/extraction.zip")
    assert zipped["checksums"]["source_plain_sha256"].endswith("-3")
    assert zipped["checksums"]["source_md5"]  # Azurite gives Content-MD5: compared too


def test_flipped_byte_through_s3_is_reported_by_full_with_exit_1(sandbox: Sandbox) -> None:
    key = "hdh/scan-0001.dcm"
    body = bytearray(sandbox.s3.get_object(Bucket=sandbox.bucket, Key=key)["Body"].read())
    body[150_000] ^= 0x40
    sandbox.s3.put_object(Bucket=sandbox.bucket, Key=key, Body=bytes(body))
    clear_cache()
    report = verify(sandbox.cfg, level="full")
    assert {f.target_key for f in report.first_findings} == {key}
    cipher = next(f for f in report.first_findings if f.what.startswith("ciphertext"))
    assert (
        cipher.source_value and cipher.target_value and cipher.source_value != cipher.target_value
    )
    assert "undecryptable" in {f.kind for f in report.first_findings}
    done = _cli(sandbox, "--level", "full")
    assert done.returncode == 1, done.stdout + done.stderr
    assert key in done.stdout and str(cipher.target_value) in done.stdout


def test_quick_flags_truncated_missing_and_extra(sandbox: Sandbox) -> None:
    s3, bucket = sandbox.s3, sandbox.bucket
    short = s3.get_object(Bucket=bucket, Key="hdh/events.jsonl")["Body"].read()[:-10]
    s3.put_object(Bucket=bucket, Key="hdh/events.jsonl", Body=short)
    s3.delete_object(Bucket=bucket, Key="hdh/IR_BEN_R.csv")
    s3.put_object(Bucket=bucket, Key="hdh/notes/unrelated.txt", Body=b"not ours")
    clear_cache()
    report = verify(sandbox.cfg)
    got = {(f.kind, f.target_key) for f in report.first_findings}
    assert ("size-mismatch", "hdh/events.jsonl") in got
    assert ("missing", "hdh/IR_BEN_R.csv") in got
    assert ("extra", "hdh/notes/unrelated.txt") in got
    assert {k for _, k in got} == {
        "hdh/events.jsonl",
        "hdh/IR_BEN_R.csv",
        "hdh/notes/unrelated.txt",
    }


class CountingConnector:
    """Counts ranged GETs made through a real connector."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.gets = 0

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        self.gets += 1
        return self.inner.open_read(key, byte_range, if_match)

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        return self.inner.put(key, data, size, metadata)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def should_retry(self, exc: BaseException) -> bool:
        return self.inner.should_retry(exc)

    def key_problem(self, key: str) -> str | None:
        return self.inner.key_problem(key)


def test_parquet_footer_on_encrypted_target_takes_at_most_3_gets(sandbox: Sandbox) -> None:
    cfg = sandbox.cfg
    ds = cfg.datasets[0]
    target = connector(EndpointRef.of(ds.target.endpoint, cfg.endpoints[ds.target.endpoint],
                                   ds.target.store))  # fmt: skip
    counting = CountingConnector(target)
    key = "hdh/ER_PRS_F.parquet"
    size = target.stat(key).size
    assert size > 3 * 64 * 1024  # more than the reader's first window
    identities = load_identities(Path(sandbox.env[ENV["IDENTITY"]]))
    counted = count_target_rows(counting, key, size, "parquet", identities)
    assert (
        counted.rows
        == PARQUET_ROWS
        == pq.read_metadata(io.BytesIO(sandbox.objects["snds/ER_PRS_F.parquet"])).num_rows
    )
    assert 1 <= counting.gets <= 3


def test_malformed_csv_is_a_finding_not_a_crash(sandbox: Sandbox, azurite: AzuriteServer) -> None:
    container = sandbox.cfg.datasets[0].source.store
    with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        blobs.get_container_client(container).upload_blob(
            "snds/broken.csv", b'a,b\n1,"never closed\n2,x\n'
        )
    clear_cache()
    service.migrate(sandbox.cfg)
    report = verify(sandbox.cfg, rows=True)
    broken = [f for f in report.first_findings if f.source_key == "snds/broken.csv"]
    assert broken and {f.kind for f in broken} == {"unreadable"}
    assert {f.source_key for f in report.first_findings} == {"snds/broken.csv"}


def test_full_without_identity_exits_2_with_one_line(sandbox: Sandbox) -> None:
    done = _cli(sandbox, "--level", "full", drop=ENV["IDENTITY"])
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and ENV["IDENTITY"] in lines[0] and "identity" in lines[0]
    quick = _cli(sandbox, drop=ENV["IDENTITY"])
    assert quick.returncode == 0, quick.stdout + quick.stderr


def test_multipart_etag_formula_matches_a_real_s3_server(moto_s3: S3Server) -> None:
    from bascule.verification.checks import multipart_etag

    s3 = boto3.client(
        "s3", endpoint_url=moto_s3.endpoint_url, region_name=moto_s3.region,
        aws_access_key_id=moto_s3.access_key_id, aws_secret_access_key=moto_s3.secret_access_key,
    )  # fmt: skip
    bucket = f"mp-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    parts = []
    for number, data in enumerate((os.urandom(5 * MiB), os.urandom(1000)), start=1):
        etag = s3.upload_part(
            Bucket=bucket, Key="k", UploadId=upload, PartNumber=number, Body=data
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"].strip('"')
    assert listed == multipart_etag(p["ETag"].strip('"') for p in parts)
    s3.close()

"""Where parts carry x-amz-checksum-sha256 (AWS, Scaleway, or an endpoint's
`part_checksum: sha256`), the digest a part task computes for the journal is the one sent:
the S3 connector never hashes the bytes again, and the server holds that digest.

moto keeps the checksums it is given without checking them, so what it reports back is what
bascule sent for a multipart upload (it declared SHA256 when it was created); a single put's
header is read where it is sent."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import types
from typing import Any

import pytest

from bascule.age.sizes import CHUNK_OVERHEAD, CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE
from bascule.config import load_config
from bascule.connectors.base import ObjectInfo
from bascule.connectors.http import HttpFailure
from bascule.connectors.s3 import connector as s3_connector
from bascule.connectors.s3.errors import SHA256_REFUSED_HINT
from bascule.connectors.s3.rest import S3Rest
from bascule.errors import ConfigError, ConnectorError, Throttled
from bascule.migration import service
from tests.conftest import S3Server, s3_connector_on
from tests.integration.cloud import CloudSetup, MiB

pytestmark = [pytest.mark.servers]


def _sha256_config(cloud: CloudSetup, **target: Any) -> Any:
    data = cloud.config_dict(encrypt=True)
    data["endpoints"]["ovh-gra"].update(target)
    return load_config(cloud.write_config(data))


def _no_second_hash(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The S3 connector's own SHA-256 calls, counted (MD5 left as it is)."""
    calls: list[int] = []

    def sha256(data: Any = b"") -> Any:
        calls.append(len(data))
        return hashlib.sha256(data)

    fake = types.SimpleNamespace(sha256=sha256, md5=hashlib.md5)
    monkeypatch.setattr(s3_connector, "hashlib", fake)
    return calls


def _sent_checksums(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Target key -> the checksum header its single PutObject carried."""
    sent: dict[str, str] = {}
    real = S3Rest.put

    def put(self: S3Rest, key: str, body: bytes, checksum: Any, metadata: Any) -> Any:
        sent[key] = dict(checksum).get(s3_connector.SHA256_HEADER, "")
        return real(self, key, body, checksum, metadata)

    monkeypatch.setattr(S3Rest, "put", put)
    return sent


def test_the_journal_digest_is_the_checksum_sent(
    cloud_moto: CloudSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = cloud_moto
    small, big = os.urandom(40_000), os.urandom(11 * MiB)
    cloud.upload("snds/small.csv", small)
    cloud.upload("snds/big.parquet", big)
    calls = _no_second_hash(monkeypatch)
    sent = _sent_checksums(monkeypatch)
    completed: list[tuple[int, str, str]] = []
    real_complete = S3Rest.complete_upload

    def recording(self: S3Rest, key: str, upload_id: str, parts: Any) -> str:
        completed.extend(parts)
        return real_complete(self, key, upload_id, parts)

    monkeypatch.setattr(S3Rest, "complete_upload", recording)
    outcome = service.migrate(_sha256_config(cloud, part_checksum="sha256"))
    assert outcome.stats.objects_committed == 2
    assert calls == []  # every write took the part task's digest

    stored = cloud.target_bytes("hdh/small.csv")
    assert sent == {"hdh/small.csv": base64.b64encode(hashlib.sha256(stored).digest()).decode()}
    assert cloud.decrypt_target("hdh/small.csv") == small
    big_head = cloud.s3_client.head_object(
        Bucket=cloud.bucket, Key="hdh/big.parquet", ChecksumMode="ENABLED"
    )
    assert big_head.get("ChecksumSHA256")  # declared when the upload was created
    stored_big = cloud.target_bytes("hdh/big.parquet")
    # moto's ListParts keeps no part checksums: the complete request lists the journal's.
    # Parts are 80 sealed chunks (5 MiB of plaintext); part 1 also holds the header.
    chunks = -(-len(big) // CHUNK_SIZE)
    prefix = len(stored_big) - len(big) - CHUNK_OVERHEAD * chunks
    step = 80 * ENCRYPTED_CHUNK_SIZE
    bounds = [0, *range(prefix + step, len(stored_big), step)]
    pieces = [stored_big[a:b] for a, b in zip(bounds, [*bounds[1:], len(stored_big)], strict=True)]
    expected = [base64.b64encode(hashlib.sha256(x).digest()).decode() for x in pieces]
    assert [sha256 for _, _, sha256 in completed] == expected
    assert cloud.decrypt_target("hdh/big.parquet") == big


def test_content_md5_sends_no_sha256(
    cloud_moto: CloudSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = cloud_moto
    cloud.upload("snds/small.csv", b"a;b\n1;2\n")
    sent = _sent_checksums(monkeypatch)
    service.migrate(_sha256_config(cloud, part_checksum="content-md5"))
    assert sent == {"hdh/small.csv": ""}
    assert cloud.decrypt_target("hdh/small.csv") == b"a;b\n1;2\n"


def test_a_connector_without_a_digest_hashes_the_part_itself(
    cloud_moto: CloudSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = s3_connector.S3Connector(
        cloud_moto.bucket,
        endpoint_url=cloud_moto.s3.endpoint_url,
        region=cloud_moto.s3.region,
        access_key_id=cloud_moto.s3.access_key_id,
        secret_access_key=cloud_moto.s3.secret_access_key,
        provider="other",
        part_checksum="sha256",
    )
    calls = _no_second_hash(monkeypatch)
    writer = conn.open_writer("k", {})
    writer.commit([writer.write_part(1, b"x" * (5 * MiB))])
    assert calls == [5 * MiB]


def test_a_part_checksum_outside_the_known_ones_is_refused(cloud_moto: CloudSetup) -> None:
    with pytest.raises(ConfigError, match="content-md5, sha256"):
        s3_connector.S3Connector("b", endpoint_url="http://127.0.0.1:1", part_checksum="crc32")
    data = cloud_moto.config_dict()
    data["endpoints"]["ovh-gra"]["part_checksum"] = "crc32"
    with pytest.raises(ConfigError, match="part_checksum"):
        load_config(cloud_moto.write_config(data))


def test_a_server_that_does_not_repeat_the_checksum_gets_content_md5_after_one_put(
    rclone_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rclone serve s3` answers a PutObject without the x-amz-checksum-sha256 it was sent:
    the first put is stat'ed to check its size, the next ones carry Content-MD5, whose
    ETag answer checks them without a HEAD."""
    conn = s3_connector_on(rclone_s3, "other")
    conn._quirks = dataclasses.replace(conn._quirks, part_checksum="sha256")
    sent: list[str] = []
    real = S3Rest.put

    def put(self: S3Rest, key: str, body: bytes, checksum: Any, metadata: Any) -> Any:
        sent.extend(checksum)
        return real(self, key, body, checksum, metadata)

    stats: list[str] = []
    real_stat = conn.stat

    def stat(key: str) -> ObjectInfo:
        stats.append(key)
        return real_stat(key)

    monkeypatch.setattr(S3Rest, "put", put)
    monkeypatch.setattr(conn, "stat", stat)
    for i in range(3):
        body = f"object {i}".encode()
        info = conn.put(f"k{i}", io.BytesIO(body), len(body), sha256=hashlib.sha256(body).digest())
        assert info.size == len(body)
        assert conn.open_read(f"k{i}").read() == body
    assert sent == [s3_connector.SHA256_HEADER, "Content-MD5", "Content-MD5"]
    assert stats == ["k0"]


def _refusing(status: int, code: str) -> Any:
    def upload_part(self: S3Rest, *args: Any) -> Any:
        raise HttpFailure(status, code, "the checksum header is not supported here")

    return upload_part


@pytest.mark.parametrize("part_checksum", ["sha256", "content-md5"])
def test_a_refused_part_says_how_to_send_content_md5_instead(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch, part_checksum: str
) -> None:
    conn = s3_connector_on(moto_s3, "other")
    conn._quirks = dataclasses.replace(conn._quirks, part_checksum=part_checksum)
    writer = conn.open_writer("k", {})
    monkeypatch.setattr(S3Rest, "upload_part", _refusing(400, "InvalidRequest"))
    with pytest.raises(ConnectorError) as refused:
        writer.write_part(1, b"x" * 1024)
    assert not refused.value.retryable
    message = str(refused.value)
    assert "InvalidRequest" in message and "\n" not in message
    assert (SHA256_REFUSED_HINT in message) == (part_checksum == "sha256")


def test_a_server_error_on_a_sha256_part_stays_a_retry(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = s3_connector_on(moto_s3, "aws")
    writer = conn.open_writer("k", {})
    monkeypatch.setattr(S3Rest, "upload_part", _refusing(503, "SlowDown"))
    with pytest.raises(Throttled) as throttled:
        writer.write_part(1, b"x" * 1024)
    assert SHA256_REFUSED_HINT not in str(throttled.value)


def test_an_upload_refused_at_creation_says_it_too(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = s3_connector_on(moto_s3, "aws")

    def create(self: S3Rest, key: str, metadata: Any, checksum_algorithm: str = "") -> str:
        assert checksum_algorithm == "SHA256"
        raise HttpFailure(400, "InvalidArgument", "unsupported algorithm")

    monkeypatch.setattr(S3Rest, "create_upload", create)
    with pytest.raises(ConnectorError, match="set part_checksum: content-md5 on the endpoint"):
        conn.open_writer("k", {})

"""Multipart uploads on a provider whose parts carry x-amz-checksum-sha256 (AWS): the upload
declares SHA256 when it is created, and the complete request lists each part's checksum.

AWS refuses a part with a checksum in an upload created without the algorithm, and a
complete request without the part checksums of an upload created with it. moto enforces
neither, but keeps the declared algorithm: the object it completes then reports a SHA-256
(`ChecksumMode=ENABLED`). ListParts on moto reports no part checksums, so the last test adds
them to its answer as AWS gives them, to see what the complete request sends."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from typing import Any

import pytest

from bascule.connectors.s3.connector import S3Connector
from bascule.connectors.s3.replies import ListedPart
from bascule.connectors.s3.rest import S3Rest
from tests.conftest import S3Server, s3_connector_on

MiB = 1024 * 1024
PARTS = (b"a" * (5 * MiB), b"b" * MiB)


def _write(connector: S3Connector, key: str) -> None:
    writer = connector.open_writer(key, {})
    receipts = [writer.write_part(n, data) for n, data in enumerate(PARTS, start=1)]
    writer.commit(receipts)


def _reported_sha256(server: S3Server, connector: S3Connector, key: str) -> str | None:
    head = server.client().head_object(Bucket=connector._bucket, Key=key, ChecksumMode="ENABLED")
    found = head.get("ChecksumSHA256")
    return str(found) if found else None


def test_an_aws_upload_declares_sha256_when_it_is_created(moto_s3: S3Server) -> None:
    connector = s3_connector_on(moto_s3, "aws")
    _write(connector, "big.bin")
    assert _reported_sha256(moto_s3, connector, "big.bin") is not None
    assert connector.open_read("big.bin").read() == b"".join(PARTS)


def test_a_content_md5_provider_declares_no_algorithm(moto_s3: S3Server) -> None:
    connector = s3_connector_on(moto_s3, "other")
    _write(connector, "big.bin")
    assert _reported_sha256(moto_s3, connector, "big.bin") is None
    assert connector.open_read("big.bin").read() == b"".join(PARTS)


def test_the_complete_request_lists_the_part_checksums_listparts_reports(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = s3_connector_on(moto_s3, "aws")
    sums = {
        n: base64.b64encode(hashlib.sha256(d).digest()).decode() for n, d in enumerate(PARTS, 1)
    }
    real_list = S3Rest.list_parts

    def as_aws(self: S3Rest, key: str, upload_id: str) -> list[ListedPart]:
        return [replace(p, sha256=sums[p.number]) for p in real_list(self, key, upload_id)]

    monkeypatch.setattr(S3Rest, "list_parts", as_aws)
    completed = _completed_parts(connector, monkeypatch)
    _write(connector, "big.bin")
    assert [(number, sha256) for number, _, sha256 in completed] == sorted(sums.items())


def _completed_parts(connector: S3Connector, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The (number, etag, SHA-256) parts of each CompleteMultipartUpload sent."""
    real = S3Rest.complete_upload
    completed: list[Any] = []

    def recording(self: S3Rest, key: str, upload_id: str, parts: Any) -> str:
        completed.extend(parts)
        return real(self, key, upload_id, parts)

    monkeypatch.setattr(S3Rest, "complete_upload", recording)
    return completed


@pytest.mark.parametrize("provider", ["aws", "other"])
def test_where_listparts_reports_none_the_receipts_digests_are_listed(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """A server whose ListParts keeps no part checksums (moto; perhaps Scaleway) still gets
    each part's SHA-256 in the complete request of a SHA-256 upload: the journal's digest of
    the bytes sent, carried by the receipt. A Content-MD5 upload lists none."""
    connector = s3_connector_on(moto_s3, provider)
    completed = _completed_parts(connector, monkeypatch)
    writer = connector.open_writer("big.bin", {})
    receipts = [
        replace(writer.write_part(n, data), sha256=hashlib.sha256(data).hexdigest())
        for n, data in enumerate(PARTS, start=1)
    ]
    writer.commit(receipts)
    listed = [(number, sha256 or None) for number, _, sha256 in completed]
    if provider == "aws":
        sums = [base64.b64encode(hashlib.sha256(d).digest()).decode() for d in PARTS]
        assert listed == [(1, sums[0]), (2, sums[1])]
    else:
        assert listed == [(1, None), (2, None)]
    assert connector.open_read("big.bin").read() == b"".join(PARTS)

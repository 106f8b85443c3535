"""The S3 control requests bascule sends itself are the requests boto3 sends for the same
operation: method, path, query parameter names and the x-amz headers that carry meaning
(metadata, checksums, copy source), seen on the wire through a proxy in front of moto.
Proxies, bucket policies and providers then see no difference from the SDK's traffic."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.config import Config

from bascule.connectors.base import ByteRange
from bascule.connectors.s3.connector import S3Connector, S3PartWriter
from tests.conftest import S3Server, new_container_name
from tests.faults.proxy import FaultPlan, FaultProxy

MiB = 1024 * 1024
# Headers that name the signer, the client or the transport, not the operation.
_IGNORED = ("x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "x-amz-user-agent")


def _shape(method: str, path: str, headers: dict[str, str]) -> tuple[Any, ...]:
    parts = urlsplit(path)
    names = sorted(k for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    meaning = sorted(
        k for k in headers if k.startswith("x-amz-") and k not in _IGNORED and "sdk" not in k
    )
    return method, parts.path, tuple(names), tuple(meaning)


class _Wire:
    """moto behind a recording proxy; each side's requests, by the step that sent them."""

    def __init__(self, server: S3Server) -> None:
        self.proxy = FaultProxy(server.endpoint_url, FaultPlan(rate=0.0)).start()
        self.bucket = new_container_name()
        # as the connector's SDK client was configured: checksums only where S3 requires one
        self.sdk = server.client(
            self.proxy.url, Config(request_checksum_calculation="when_required")
        )
        self.sdk.create_bucket(Bucket=self.bucket)
        self.sdk_upload_id = ""
        self.writer: S3PartWriter | None = None
        self.ours = S3Connector(
            self.bucket, endpoint_url=self.proxy.url, region=server.region,
            access_key_id=server.access_key_id, secret_access_key=server.secret_access_key,
            provider="other",
        )  # fmt: skip

    def sent(self, step: Callable[[], object]) -> list[tuple[Any, ...]]:
        start = len(self.proxy.received)
        step()
        requests = self.proxy.received[start:]
        headers = self.proxy.received_headers[start:]
        return [_shape(m, p, h) for (m, p, _), h in zip(requests, headers, strict=True)]


@pytest.fixture()
def wire(moto_s3: S3Server) -> Any:
    w = _Wire(moto_s3)
    try:
        yield w
    finally:
        w.proxy.stop()


def test_the_control_requests_are_boto3s(wire: _Wire) -> None:
    sdk, ours, b = wire.sdk, wire.ours, wire.bucket
    part = b"p" * (5 * MiB)
    ours.put("k/obj", io.BytesIO(b"data"), 4)

    def sdk_upload() -> None:
        up = sdk.create_multipart_upload(Bucket=b, Key="k/big", Metadata={"origin": "t"})
        wire.sdk_upload_id = up["UploadId"]

    def our_upload() -> None:
        wire.writer = ours.open_writer("k/big", {"origin": "t"})

    steps: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("HeadObject", lambda: sdk.head_object(Bucket=b, Key="k/obj"), lambda: ours.stat("k/obj")),
        ("HeadBucket", lambda: sdk.head_bucket(Bucket=b), ours._check_bucket),
        ("CreateMultipartUpload", sdk_upload, our_upload),
        ("ListMultipartUploads", lambda: sdk.list_multipart_uploads(Bucket=b, Prefix="k/"),
         lambda: list(ours.list_uploads("k/"))),
    ]  # fmt: skip
    for name, theirs, mine in steps:
        assert wire.sent(mine) == wire.sent(theirs), name

    # One upload each, the same parts, then ListParts, UploadPartCopy and the commit.
    sdk_id, writer = wire.sdk_upload_id, wire.writer
    assert writer is not None
    etag = sdk.upload_part(Bucket=b, Key="k/big", UploadId=sdk_id, PartNumber=1, Body=part)["ETag"]
    receipt = writer.write_part(1, part)
    obj_etag = ours.stat("k/obj").etag
    assert wire.sent(writer.list_parts) == wire.sent(
        lambda: sdk.list_parts(Bucket=b, Key="k/big", UploadId=sdk_id)
    )
    copied = wire.sent(
        lambda: ours.copy_part("k/big", writer.resume_token, 2, "k/obj", ByteRange(0, 4), obj_etag)
    )
    assert copied == wire.sent(
        lambda: sdk.upload_part_copy(
            Bucket=b, Key="k/big", UploadId=sdk_id, PartNumber=2,
            CopySource={"Bucket": b, "Key": "k/obj"}, CopySourceRange="bytes=0-3",
            CopySourceIfMatch=f'"{obj_etag}"',
        )
    )  # fmt: skip
    listed = {p.number: p for p in writer.list_parts()}
    done_ours = wire.sent(
        lambda: ours._data(
            "k/big",
            lambda rest: rest.complete_upload(
                "k/big", writer._upload_id, [(1, receipt.etag, ""), (2, listed[2].etag, "")]
            ),
        )
    )
    sdk_parts = sdk.list_parts(Bucket=b, Key="k/big", UploadId=sdk_id)["Parts"]
    done_sdk = wire.sent(lambda: sdk.complete_multipart_upload(
        Bucket=b, Key="k/big", UploadId=sdk_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag},
                                   {"PartNumber": 2, "ETag": sdk_parts[1]["ETag"]}]}))  # fmt: skip
    assert done_ours == done_sdk
    assert wire.sent(lambda: ours.delete("k/big")) == wire.sent(
        lambda: sdk.delete_object(Bucket=b, Key="k/big")
    )


def test_an_abort_is_boto3s(wire: _Wire) -> None:
    sdk, ours, b = wire.sdk, wire.ours, wire.bucket
    writer = ours.open_writer("k/gone", {})
    up = sdk.create_multipart_upload(Bucket=b, Key="k/gone")
    assert wire.sent(writer.abort) == wire.sent(
        lambda: sdk.abort_multipart_upload(Bucket=b, Key="k/gone", UploadId=up["UploadId"])
    )

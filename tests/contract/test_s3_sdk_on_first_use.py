"""With explicit keys and an endpoint, an S3 target is listed, written (a small put and a
multipart upload), stat'ed and read without importing boto3 (its import and client cost
about 0.24 s at every start); without keys, the SDK's credential chain (here the
environment) signs the same requests. Each case runs in a process of its own, since the
test process has imported boto3 already."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import S3Server, new_container_name

CHILD = """
import io, json, sys
from bascule.connectors.s3.connector import S3Connector
endpoint, region, key_id, secret, bucket = sys.argv[1:6]
explicit = dict(access_key_id=key_id, secret_access_key=secret) if key_id else {}
s3 = S3Connector(bucket, endpoint_url=endpoint, region=region, provider="other", **explicit)
s3.put("a/small.bin", io.BytesIO(b"hello"), 5)
writer = s3.open_writer("a/big.bin", {"origin": "test"})
part = b"x" * (5 * 1024 * 1024)
receipts = [writer.write_part(1, part), writer.write_part(2, b"tail")]
writer.commit(receipts)
info = s3.stat("a/big.bin")
print(json.dumps({
    "keys": [o.key for o in s3.list("a/")],
    "read": s3.open_read("a/small.bin").read().decode(),
    "size": info.size, "metadata": dict(info.metadata),
    "uploads": len(list(s3.list_uploads())),
    "boto3": "boto3" in sys.modules, "botocore": "botocore" in sys.modules,
}))
"""


def _run(server: S3Server, explicit: bool) -> dict[str, object]:
    bucket = new_container_name()
    server.client().create_bucket(Bucket=bucket)
    env = dict(os.environ)
    keys = [server.access_key_id, server.secret_access_key] if explicit else ["", ""]
    if not explicit:  # the SDK's chain finds them in the environment
        env["AWS_ACCESS_KEY_ID"] = server.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = server.secret_access_key
    done = subprocess.run(
        [sys.executable, "-c", CHILD, server.endpoint_url, server.region, *keys, bucket],
        capture_output=True, text=True, check=True, timeout=120, env=env,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def test_explicit_keys_and_endpoint_never_import_the_sdk(moto_s3: S3Server) -> None:
    seen = _run(moto_s3, explicit=True)
    assert seen == {
        "keys": ["a/big.bin", "a/small.bin"], "read": "hello", "size": 5 * 1024 * 1024 + 4,
        "metadata": {"origin": "test"}, "uploads": 0, "boto3": False, "botocore": False,
    }  # fmt: skip


def test_without_keys_the_sdk_chain_signs_the_same_requests(moto_s3: S3Server) -> None:
    seen = _run(moto_s3, explicit=False)
    assert seen["keys"] == ["a/big.bin", "a/small.bin"] and seen["read"] == "hello"
    assert seen["metadata"] == {"origin": "test"} and seen["uploads"] == 0
    assert seen["boto3"] is True

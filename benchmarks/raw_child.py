"""The raw bounds: read the source alone, or write the target alone, with the same
concurrency and part size as the copy lines, through the cloud SDKs directly (no bascule code).

Usage:
  python -m benchmarks.raw_child read PREFIX PART_SIZE CONCURRENCY
  python -m benchmarks.raw_child write BUCKET COUNT SIZE PART_SIZE CONCURRENCY

Credentials come from the environment (BENCH_AZURE_CONNECTION_STRING, BENCH_S3_ENDPOINT,
BENCH_S3_ACCESS_KEY_ID, BENCH_S3_SECRET_ACCESS_KEY); on HTTPS, BENCH_CA_BUNDLE names the CA
file both clients trust (and nothing else). Prints {"bytes": N, "objects": N}.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from azure.storage.blob import BlobServiceClient, ContainerClient
from botocore.config import Config

from benchmarks.sandbox import REGION, SOURCE_CONTAINER, azure_verify

READ_SIZE = 1024 * 1024


def _ca_file() -> Path | None:
    value = os.environ.get("BENCH_CA_BUNDLE")
    return Path(value) if value else None


def _run_all(concurrency: int, fn: Callable[..., int], args: Iterable[tuple[Any, ...]]) -> int:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(fn, *a) for a in args]
        return sum(f.result() for f in futures)


def _read_range(container: ContainerClient, key: str, offset: int, length: int) -> int:
    stream = container.download_blob(key, offset=offset, length=length, max_concurrency=1)
    return sum(len(chunk) for chunk in stream.chunks())


def raw_read(prefix: str, part_size: int, concurrency: int) -> dict[str, int]:
    service = BlobServiceClient.from_connection_string(
        os.environ["BENCH_AZURE_CONNECTION_STRING"],
        max_single_get_size=part_size,
        connection_verify=azure_verify(_ca_file()),
    )
    container = service.get_container_client(SOURCE_CONTAINER)
    blobs = [(b.name, int(b.size)) for b in container.list_blobs(name_starts_with=prefix)]
    ranges = [
        (container, name, offset, min(part_size, size - offset))
        for name, size in blobs
        for offset in range(0, size, part_size)
    ]
    total = _run_all(concurrency, _read_range, ranges)
    service.close()
    return {"bytes": total, "objects": len(blobs)}


def _s3(concurrency: int) -> Any:
    ca_file = _ca_file()
    return boto3.client(
        "s3",
        endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
        region_name=REGION,
        aws_access_key_id=os.environ["BENCH_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["BENCH_S3_SECRET_ACCESS_KEY"],
        verify=str(ca_file) if ca_file else None,
        config=Config(
            max_pool_connections=concurrency,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def raw_write(
    bucket: str, count: int, size: int, part_size: int, concurrency: int
) -> dict[str, int]:
    client = _s3(concurrency)
    payload = os.urandom(min(size, part_size))
    keys = [f"obj-{i:05d}.bin" for i in range(count)]
    if size <= part_size:

        def put(key: str) -> int:
            client.put_object(Bucket=bucket, Key=key, Body=payload)
            return size

        total = _run_all(concurrency, put, [(k,) for k in keys])
        return {"bytes": total, "objects": count}
    uploads = {k: client.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"] for k in keys}
    parts = [(k, n + 1) for k in keys for n in range(-(-size // part_size))]
    etags: dict[tuple[str, int], str] = {}

    def upload(key: str, number: int) -> int:
        body = payload[: min(part_size, size - (number - 1) * part_size)]
        reply = client.upload_part(
            Bucket=bucket, Key=key, UploadId=uploads[key], PartNumber=number, Body=body
        )
        etags[(key, number)] = reply["ETag"]
        return len(body)

    total = _run_all(concurrency, upload, parts)
    for key, upload_id in uploads.items():
        numbers = sorted(n for (k, n) in etags if k == key)
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": etags[(key, n)]} for n in numbers]
            },
        )
    return {"bytes": total, "objects": count}


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "read":
        figures = raw_read(args[0], int(args[1]), int(args[2]))
    elif mode == "write":
        figures = raw_write(args[0], *(int(a) for a in args[1:5]))
    else:
        raise SystemExit(f"unknown mode {mode!r}; use read or write")
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

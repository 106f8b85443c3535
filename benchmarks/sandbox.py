"""The benchmark's own servers and data: Azurite (source) and `rclone serve s3` (target).

Both bind 127.0.0.1, are started here and stopped by the pid started. Source data is
generated block by block (never a whole object in memory), from a seeded generator, so that
every run copies the same bytes.
"""

from __future__ import annotations

import random
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from bascule.sandbox import servers

MiB = 1024 * 1024
KiB = 1024
SOURCE_CONTAINER = "bench-src"
REGION = "us-east-1"
SEED_BLOCK = 8 * MiB


@dataclass(frozen=True)
class DatasetShape:
    """`count` objects of `size` bytes under `prefix` in the source container."""

    name: str
    prefix: str
    count: int
    size: int

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def describe(self) -> str:
        size = f"{self.size // MiB} MiB" if self.size >= MiB else f"{self.size // KiB} KiB"
        return f"{self.count} x {size}"


@dataclass
class Sandbox:
    root: Path
    azurite: servers.ServerProcess
    s3: servers.ServerProcess
    s3_data: Path
    s3_key_id: str
    s3_secret: str

    @property
    def azure_connection_string(self) -> str:
        return servers.azurite_connection_string(self.azurite.port)

    @property
    def azure_endpoint(self) -> str:
        return f"{self.azurite.url}/{servers.AZURITE_ACCOUNT}"

    def s3_client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.s3.url,
            region_name=REGION,
            aws_access_key_id=self.s3_key_id,
            aws_secret_access_key=self.s3_secret,
        )

    def fresh_bucket(self, name: str) -> str:
        """A new, empty target bucket (a folder of the `rclone serve s3` data directory)."""
        self.drop_bucket(name)
        client = self.s3_client()
        client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
        client.close()  # type: ignore[attr-defined]
        return name

    def bucket_usage(self, name: str) -> tuple[int, int]:
        """(objects, bytes) stored in a target bucket, read from the server's data folder."""
        files = [p for p in (self.s3_data / name).rglob("*") if p.is_file()]
        return len(files), sum(p.stat().st_size for p in files)

    def drop_bucket(self, name: str) -> None:
        # Removing the folder is what `rclone serve s3` stores; far quicker than S3 deletes,
        # and it frees the page cache of what the previous line wrote.
        shutil.rmtree(self.s3_data / name, ignore_errors=True)


@contextmanager
def running_sandbox(root: Path) -> Iterator[Sandbox]:
    """Start both servers under `root`; always stop them (by pid) on the way out."""
    started: list[int] = []
    try:
        azurite = servers.start_azurite(
            root / "azurite", servers.free_port(), root / "logs" / "azurite.log"
        )
        started.append(azurite.pid)
        # rclone refuses very short keys: ordinary lengths (20 / 40 characters).
        key_id, secret = secrets.token_hex(10), secrets.token_hex(20)
        s3_data = root / "s3"
        s3 = servers.start_rclone_s3(
            s3_data, servers.free_port(), root / "logs" / "rclone-s3.log", key_id, secret
        )
        started.append(s3.pid)
        yield Sandbox(root, azurite, s3, s3_data, key_id, secret)
    finally:
        for pid in reversed(started):
            servers.stop_pid(pid)


def _blocks(seed: str, size: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    left = size
    while left:
        n = min(SEED_BLOCK, left)
        left -= n
        yield rng.randbytes(n)


def _upload_streaming(container: ContainerClient, key: str, size: int) -> None:
    blob = container.get_blob_client(key)
    ids: list[BlobBlock] = []
    for i, block in enumerate(_blocks(key, size)):
        block_id = f"{i:08d}"
        blob.stage_block(block_id, block)
        ids.append(BlobBlock(block_id=block_id))
    blob.commit_block_list(ids)


def _upload_small(container: ContainerClient, key: str, size: int) -> None:
    container.get_blob_client(key).upload_blob(random.Random(key).randbytes(size))


def seed_source(sandbox: Sandbox, shapes: list[DatasetShape]) -> None:
    """Write every dataset into the source container (large objects block by block)."""
    service = BlobServiceClient.from_connection_string(sandbox.azure_connection_string)
    try:
        container = service.get_container_client(SOURCE_CONTAINER)
        if not container.exists():
            container.create_container()
        for shape in shapes:
            upload = _upload_streaming if shape.size > SEED_BLOCK else _upload_small
            with ThreadPoolExecutor(max_workers=8 if shape.size <= SEED_BLOCK else 2) as pool:
                futures = [
                    pool.submit(upload, container, f"{shape.prefix}obj-{i:05d}.bin", shape.size)
                    for i in range(shape.count)
                ]
                for future in futures:
                    future.result()
    finally:
        service.close()

"""The benchmark's own servers and data: Azurite (source) and `rclone serve s3` (target).

Both bind 127.0.0.1, are started here and stopped by the pid started. On the `tls`
transport both speak HTTPS with a server certificate from a CA made for the run (under
`<root>/tls/`), and every client, ours included, trusts that CA alone: nothing skips
verification. Source data is generated block by block (never a whole object in memory),
from a seeded generator, so that every run copies the same bytes.
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
import psutil
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from bascule.sandbox import servers, tls

MiB = 1024 * 1024
KiB = 1024
SOURCE_CONTAINER = "bench-src"
REGION = "us-east-1"
SEED_BLOCK = 8 * MiB
TRANSPORTS = ("tls", "plain")  # tls first: the production path is the headline


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
    def ca_file(self) -> Path | None:
        """The CA both servers' certificates chain to; None on plain HTTP."""
        return self.azurite.ca_file

    @property
    def transport(self) -> str:
        return "tls" if self.ca_file else "plain"

    @property
    def azure_connection_string(self) -> str:
        return servers.azurite_connection_string(self.azurite.port, tls=self.ca_file is not None)

    @property
    def azure_endpoint(self) -> str:
        return f"{self.azurite.url}/{servers.AZURITE_ACCOUNT}"

    def server_cpu_seconds(self) -> float:
        """User + system CPU seconds both servers (and their children) have used so far."""
        return sum(self.server_cpu_by_server())

    def server_cpu_by_server(self) -> tuple[float, float]:
        """(Azurite, rclone serve s3): each one's CPU seconds so far, children included."""
        return _cpu_seconds(self.azurite.pid), _cpu_seconds(self.s3.pid)

    def s3_client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.s3.url,
            region_name=REGION,
            aws_access_key_id=self.s3_key_id,
            aws_secret_access_key=self.s3_secret,
            verify=str(self.ca_file) if self.ca_file else None,
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


def _server_tls(root: Path) -> servers.ServerTls:
    """A new CA and a server certificate for 127.0.0.1 under `root` (never one left over)."""
    files = tls.make_ca_and_server(root)
    return servers.ServerTls(files.server_cert, files.server_key, files.ca_cert)


@contextmanager
def running_sandbox(root: Path, transport: str = "plain") -> Iterator[Sandbox]:
    """Start both servers under `root`, over HTTPS when `transport` is "tls"; always stop
    them (by pid) on the way out."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; use one of {', '.join(TRANSPORTS)}")
    server_tls = _server_tls(root / "tls") if transport == "tls" else None
    started: list[int] = []
    try:
        azurite = servers.start_azurite(
            root / "azurite", servers.free_port(), root / "logs" / "azurite.log", server_tls
        )
        started.append(azurite.pid)
        # rclone refuses very short keys: ordinary lengths (20 / 40 characters).
        key_id, secret = secrets.token_hex(10), secrets.token_hex(20)
        s3_data = root / "s3"
        s3 = servers.start_rclone_s3(
            s3_data,
            servers.free_port(),
            root / "logs" / "rclone-s3.log",
            key_id,
            secret,
            server_tls,
        )
        started.append(s3.pid)
        if server_tls:
            _check_https(azurite, s3)
        yield Sandbox(root, azurite, s3, s3_data, key_id, secret)
    finally:
        for pid in reversed(started):
            servers.stop_pid(pid)


def _check_https(*started: servers.ServerProcess) -> None:
    """Each server answers HTTPS with a certificate that our CA signed and that the system's
    trust store refuses: a line trusting anything else would fail, not measure something else."""
    for server in started:
        if not servers.http_answers(server.url + "/", server.ca_file):
            raise servers.ServerError(f"{server.name} does not answer HTTPS on {server.url}")
        if servers.http_answers(server.url + "/"):
            raise servers.ServerError(
                f"{server.name} on {server.url} is trusted without the benchmark's CA; "
                "its certificate is not the one made for this run"
            )


def azure_verify(ca_file: Path | None) -> bool | str:
    """The Azure SDK's `connection_verify`: the CA file on HTTPS, else the default (True)."""
    return str(ca_file) if ca_file else True


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
    service = BlobServiceClient.from_connection_string(
        sandbox.azure_connection_string, connection_verify=azure_verify(sandbox.ca_file)
    )
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


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    try:
        proc = psutil.Process(pid)
        for p in (proc, *proc.children(recursive=True)):
            times = p.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass  # a server that died: the line fails on its own
    return total

"""A bascule.yaml on the real emulators: Azurite as the source, an S3 server as the target.

Shared by the integration tests: `CloudSetup.make(...)` creates a fresh container and bucket,
exports the credentials under the names the config uses, and returns the loaded config."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

import boto3
import pytest
import yaml
from azure.storage.blob import BlobServiceClient

from bascule.age.stream import X25519Identity, write_identity_file
from bascule.config import Config, load_config
from bascule.endpoints import clear_cache
from bascule.runners import ThreadRunner

if TYPE_CHECKING:
    from tests.conftest import AzuriteServer, S3Server

MiB = 1024 * 1024
ENV = {
    "azure": "T_AZURE_CONNECTION_STRING",
    "s3_id": "T_S3_ACCESS_KEY_ID",
    "s3_secret": "T_S3_SECRET_ACCESS_KEY",
    "identity": "T_AGE_IDENTITY",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class CloudSetup:
    tmp_path: Path
    azurite: AzuriteServer
    s3: S3Server
    monkeypatch: pytest.MonkeyPatch

    def __post_init__(self) -> None:
        self.container = f"src-{uuid.uuid4().hex[:12]}"
        self.bucket = f"dst-{uuid.uuid4().hex[:12]}"
        self.identity = X25519Identity.generate()
        self.identity_file = self.tmp_path / "identity.txt"
        write_identity_file(self.identity_file, self.identity, "2026-01-01T00:00:00Z")
        self.blobs = BlobServiceClient.from_connection_string(self.azurite.connection_string)
        self.blobs.create_container(self.container)
        self.s3_client = boto3.client(
            "s3", endpoint_url=self.s3.endpoint_url, region_name=self.s3.region,
            aws_access_key_id=self.s3.access_key_id,
            aws_secret_access_key=self.s3.secret_access_key,
        )  # fmt: skip
        self.s3_client.create_bucket(Bucket=self.bucket)
        self.monkeypatch.setenv(ENV["azure"], self.azurite.connection_string)
        self.monkeypatch.setenv(ENV["s3_id"], self.s3.access_key_id)
        self.monkeypatch.setenv(ENV["s3_secret"], self.s3.secret_access_key)
        self.monkeypatch.setenv(ENV["identity"], str(self.identity_file))
        clear_cache()

    @property
    def secrets(self) -> list[str]:
        """Every secret the setup holds: none may appear in logs, journal, tasks or target."""
        from bascule.sandbox.servers import AZURITE_KEY

        return [self.s3.secret_access_key, AZURITE_KEY, self.identity.to_secret_string()]

    def upload(self, key: str, data: bytes) -> None:
        self.blobs.get_blob_client(self.container, key).upload_blob(data, overwrite=True)

    def target_bytes(self, key: str) -> bytes:
        body = self.s3_client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return bytes(body.read())

    def target_keys(self, prefix: str = "") -> list[str]:
        pages = self.s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def decrypt_target(self, key: str) -> bytes:
        """The target object decrypted by Debian's `age` CLI (the reference oracle)."""
        out = subprocess.run(
            ["age", "-d", "-i", str(self.identity_file)],
            input=self.target_bytes(key), capture_output=True, check=True,
        )  # fmt: skip
        return out.stdout

    def config(self, encrypt: bool = True, **transfer: Any) -> Config:
        return load_config(self.write_config(self.config_dict(encrypt, **transfer)))

    def write_config(self, data: dict[str, Any]) -> Path:
        path = self.tmp_path / "bascule.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        return path

    def config_dict(self, encrypt: bool = True, **transfer: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "project": "it",
            "deadline": "2027-01-31",
            "journal": "state/journal.db",
            "endpoints": {
                "azure-fc": {"kind": "azure-blob", "connection_string_env": ENV["azure"]},
                "ovh-gra": {"kind": "s3", "provider": "other", "region": self.s3.region,
                            "endpoint_url": self.s3.endpoint_url,
                            "access_key_id_env": ENV["s3_id"],
                            "secret_access_key_env": ENV["s3_secret"]},
            },
            "encryption": {"recipients": [str(self.identity.recipient())],
                           "identity_file_env": ENV["identity"]},
            "transfer": {"part_size": "5MiB", **transfer},
            "datasets": [
                {"name": "snds", "source": {"endpoint": "azure-fc", "container": self.container,
                                            "prefix": "snds/"},
                 "target": {"endpoint": "ovh-gra", "bucket": self.bucket, "prefix": "hdh/"},
                 "encrypt": encrypt},
            ],
        }  # fmt: skip
        return data

    def close(self) -> None:
        self.blobs.close()
        self.s3_client.close()


R = TypeVar("R")
Ts = TypeVarTuple("Ts")


class StopAfter(ThreadRunner):
    """One task at a time; the run is asked to stop once `n` of them are done."""

    def __init__(self, n: int, stop: threading.Event) -> None:
        super().__init__(1)
        self.n, self.stop, self.done = n, stop, 0

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        future = super().submit(fn, *args)
        future.add_done_callback(self._count)
        return future

    def _count(self, _: Future[Any]) -> None:
        self.done += 1
        if self.done >= self.n:
            self.stop.set()

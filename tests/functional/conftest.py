"""Helpers for executor tests on local folders: a config, an identity, and an age oracle."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from bascule.age.stream import X25519Identity, write_identity_file
from bascule.config import Config, load_config
from bascule.endpoints import clear_cache

MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age_decrypt(path: Path, identity_file: Path) -> bytes:
    """Decrypt with Debian's `age` CLI: the reference implementation is the oracle."""
    out = subprocess.run(
        ["age", "-d", "-i", str(identity_file), str(path)], capture_output=True, check=True
    )
    return out.stdout


@pytest.fixture()
def identity_file(tmp_path: Path) -> tuple[Path, str]:
    identity = X25519Identity.generate()
    path = tmp_path / "keys" / "identity.txt"
    path.parent.mkdir()
    write_identity_file(path, identity, "2026-01-01T00:00:00Z")
    return path, str(identity.recipient())


@pytest.fixture(autouse=True)
def _fresh_connectors() -> None:
    clear_cache()


LocalConfig = Callable[..., Config]


@pytest.fixture()
def local_config(tmp_path: Path, identity_file: tuple[Path, str]) -> LocalConfig:
    """A bascule.yaml with a local source folder and a local target folder."""

    def make(encrypt: bool = True, part_size: str = "5MiB", **transfer: object) -> Config:
        (tmp_path / "src" / "c").mkdir(parents=True, exist_ok=True)
        (tmp_path / "dst" / "b").mkdir(parents=True, exist_ok=True)
        data = {
            "project": "test",
            "journal": "state/journal.db",
            "endpoints": {
                "azure-fc": {"kind": "local", "path": str(tmp_path / "src")},
                "ovh-gra": {"kind": "local", "path": str(tmp_path / "dst")},
            },
            "encryption": {"recipients": [identity_file[1]]},
            "transfer": {"part_size": part_size, **transfer},
            "datasets": [
                {"name": "ds", "source": {"endpoint": "azure-fc", "container": "c",
                                          "prefix": "in/"},
                 "target": {"endpoint": "ovh-gra", "bucket": "b", "prefix": "out/"},
                 "encrypt": encrypt}
            ],
        }  # fmt: skip
        path = tmp_path / "bascule.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_config(path)

    return make

"""A worker process runs its tasks without importing the config's models (pydantic) or
tenacity: each costs a worker about 0.1 CPU s at start, on every run, and most runs need
neither (the tasks carry plain endpoint specs, and a call that succeeds at once never
reaches the retry policy)."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from bascule.config import AzureBlobEndpoint, LocalEndpoint, RcloneEndpoint, S3Endpoint
from bascule.endpoints import EndpointRef, spec_of
from bascule.migration.plan import PartSpec
from bascule.migration.tasks import PartTask

# The child: the modules a worker preloads, then the pickled batch, then the batch run.
CHILD = """
import pickle, sys
import bascule.migration.tasks as tasks
import bascule.verification.reread
batch = pickle.loads(sys.stdin.buffer.read())
outcomes = tasks.run_objects(batch, 3)
assert all(isinstance(o[0], tasks.PartResult) for o in outcomes), outcomes
heavy = sorted(m for m in ("pydantic", "bascule.config", "tenacity") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def _batch(root: Path) -> tuple[PartTask, ...]:
    for name in ("src", "dst"):
        (root / name).mkdir()
    for i in range(3):
        (root / "src" / f"o{i}").write_bytes(b"x" * (i + 1))
    endpoint = LocalEndpoint(kind="local", path=root)
    source = EndpointRef.of("src", endpoint, "src")
    target = EndpointRef.of("dst", endpoint, "dst")
    return tuple(
        PartTask(source, target, f"o{i}", f"o{i}", "", PartSpec(1, 0, i + 1, 0, i + 1, 0, True),
                 encrypt=False)
        for i in range(3)
    )  # fmt: skip


def test_a_worker_runs_a_batch_without_pydantic_or_tenacity(tmp_path: Path) -> None:
    blob = pickle.dumps(_batch(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", CHILD], input=blob, capture_output=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "none"
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["o0", "o1", "o2"]
    assert (tmp_path / "dst" / "o2").read_bytes() == b"xxx"


ENDPOINTS = [
    AzureBlobEndpoint(kind="azure-blob", connection_string_env="AZ", ca_bundle=Path("/ca.pem")),
    S3Endpoint(
        kind="s3", provider="scaleway", region="fr-par", max_parts=500, part_checksum="sha256",
        access_key_id_env="K", secret_access_key_env="S", allow_insecure_http=True,
    ),
    LocalEndpoint(kind="local", path=Path("/data")),
    RcloneEndpoint(kind="rclone", remote="ovh"),
]  # fmt: skip


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.kind)
def test_a_spec_holds_every_setting_of_its_endpoint(
    endpoint: AzureBlobEndpoint | S3Endpoint | LocalEndpoint | RcloneEndpoint,
) -> None:
    spec = spec_of(endpoint)
    assert dataclasses.asdict(spec) == endpoint.model_dump(exclude={"kind"})
    assert pickle.loads(pickle.dumps(EndpointRef("e", spec, "b"))) == EndpointRef("e", spec, "b")


def test_two_refs_share_a_connector_only_when_their_settings_match() -> None:
    one = EndpointRef.of("s", S3Endpoint(kind="s3", region="fr-par"), "b")
    same = EndpointRef.of("s", S3Endpoint(kind="s3", region="fr-par"), "b")
    other = EndpointRef.of("s", S3Endpoint(kind="s3", region="nl-ams"), "b")
    assert one.cache_key == same.cache_key
    assert one.cache_key != other.cache_key

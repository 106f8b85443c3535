"""Issue-level acceptance on the real sandbox, through the CLI only, as an operator would:
sandbox up, seed, plan, dry run, migrate (encrypted), migrate again; then every target object
is decrypted by Debian's `age` CLI and compared with the source, edge cases included."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from azure.storage.blob import BlobServiceClient

from bascule.sandbox.servers import free_port
from tests.conftest import ServerBinaries

pytestmark = pytest.mark.slow
BASCULE = [sys.executable, "-m", "bascule.cli.app"]


def run(*args: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*BASCULE, *args], env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def sandbox_env(state: Path) -> dict[str, str]:
    """The environment `source env.sh` gives an operator."""
    env = dict(os.environ)
    for line in (state / "env.sh").read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip().strip("'\"")
    return env


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, server_binaries: ServerBinaries
) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("sandbox")
    env = dict(os.environ)
    up = [
        "sandbox", "up", "--state-dir", str(state),
        "--azure-port", str(free_port()), "--s3-port", str(free_port()),
    ]  # fmt: skip
    run(*up, env=env)
    try:
        run("sandbox", "seed", "--state-dir", str(state), "--scale", "0.05", env=env)
        yield state
    finally:
        run("sandbox", "down", "--state-dir", str(state), env=env)


def test_migrate_the_seeded_sandbox_encrypted_and_decrypt_every_object_with_age(
    sandbox: Path,
) -> None:
    env = sandbox_env(sandbox)
    config = str(sandbox / "bascule.yaml")
    state = json.loads((sandbox / "sandbox.json").read_text())

    lines = [
        json.loads(line)
        for line in run("plan", "-c", config, "--json", env=env).stdout.splitlines()
    ]
    summary = lines[-1]
    assert summary["type"] == "summary"
    planned = summary["totals"]["objects"]
    assert planned == sum(1 for line in lines if line["type"] == "object")
    assert planned > 20
    dry = run("migrate", "-c", config, "--dry-run", env=env)
    assert "nothing was written" in dry.stdout
    s3 = boto3.client(
        "s3", endpoint_url=state["s3"]["endpoint_url"], region_name=state["s3"]["region"],
        aws_access_key_id=state["s3"]["access_key_id"],
        aws_secret_access_key=state["s3"]["secret_access_key"],
    )  # fmt: skip
    assert (
        s3.list_objects_v2(Bucket="hdh-snds").get("KeyCount", 0) == 0
    )  # the dry run wrote nothing

    first = run("migrate", "-c", config, env=env)
    assert f"copied {planned} objects" in first.stdout
    again = run("migrate", "-c", config, env=env)
    assert "nothing to copy" in again.stdout

    blobs = BlobServiceClient.from_connection_string(state["azure"]["connection_string"])
    container = blobs.get_container_client("snds")
    identity = env["BASCULE_AGE_IDENTITY"]
    checked = 0
    edge = set()
    for blob in container.list_blobs():
        source = container.download_blob(blob.name).readall()
        body = s3.get_object(Bucket="hdh-snds", Key=blob.name)
        stored = body["Body"].read()
        meta = {k.lower(): v for k, v in body["Metadata"].items()}
        assert meta.get("bascule-encryption") == "age-v1"
        plain = subprocess.run(
            ["age", "-d", "-i", identity], input=stored, capture_output=True, check=True
        ).stdout
        assert hashlib.sha256(plain).digest() == hashlib.sha256(source).digest(), blob.name
        checked += 1
        if blob.name.startswith("edge/"):
            edge.add((blob.name, len(source)))
    assert checked == planned
    sizes = {size for _, size in edge}
    assert 0 in sizes and 8 * 1024 * 1024 in sizes and 8 * 1024 * 1024 + 1 in sizes
    assert any(" " in name for name, _ in edge) and any(not name.isascii() for name, _ in edge)
    blobs.close()

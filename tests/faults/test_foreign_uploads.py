"""A resume aborts the uploads its own journal opened, and nothing another writer left.

S3 (moto and `rclone serve s3`): `bascule migrate` is SIGKILLed while its CreateMultipartUpload
has reached the server but its answer has not (the one instant the journal cannot hold the
upload id yet); another tool's unfinished upload sits in the same bucket, target prefix "".
Azure (Azurite): the journal holds an upload token but no object for it (a crash between
the two writes), and another writer has staged blocks on other blobs of the container."""

from __future__ import annotations

import base64
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from bascule.config import load_config
from bascule.connectors.base import PartWriterOpener
from bascule.endpoints import clear_cache, connector
from bascule.migration import service
from bascule.migration.journal import Uploads
from tests.conftest import AzuriteServer
from tests.faults.proxy import FaultPlan, FaultProxy
from tests.integration.cloud import ENV, CloudSetup, MiB, sha256

pytestmark = [pytest.mark.servers]
BASCULE = [sys.executable, "-m", "bascule.cli.app"]
PART = 5 * MiB


def _is_create(method: str, path: str) -> bool:
    return method == "POST" and path.endswith("?uploads")


def _s3_uploads(cloud: CloudSetup) -> list[tuple[str, str]]:
    try:
        found = cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket).get("Uploads", [])
    except cloud.s3_client.exceptions.NoSuchUpload:  # rclone's answer when there is none
        return []
    return sorted((u["Key"], u["UploadId"]) for u in found)


@pytest.mark.parametrize("server", ["cloud_moto", "cloud"])
def test_resume_aborts_its_own_orphan_and_spares_a_foreign_upload(
    server: str, request: pytest.FixtureRequest
) -> None:
    cloud: CloudSetup = request.getfixturevalue(server)
    data = random.Random(server).randbytes(2 * PART + 7)
    cloud.upload("snds/large/0.bin", data)
    foreign = cloud.s3_client.create_multipart_upload(Bucket=cloud.bucket, Key="tool/x.bin")
    cloud.s3_client.upload_part(Bucket=cloud.bucket, Key="tool/x.bin", PartNumber=1,
                                UploadId=foreign["UploadId"], Body=b"theirs")  # fmt: skip
    plan = FaultPlan(rate=0, hold=_is_create, hold_after_forward=True)
    proxy = FaultProxy(cloud.s3.endpoint_url, plan).start()
    config = cloud.config_dict(concurrency=1)
    config["endpoints"]["ovh-gra"]["endpoint_url"] = proxy.url
    config["datasets"][0]["target"]["prefix"] = ""  # the whole bucket
    path = cloud.write_config(config)
    try:
        proc = subprocess.Popen([*BASCULE, "migrate", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        assert proxy.holding.wait(timeout=60), "CreateMultipartUpload never came"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert len(_s3_uploads(cloud)) == 2  # theirs, and ours with its id lost in the crash
        proxy.release()
        done = subprocess.run([*BASCULE, "migrate", "-c", str(path)], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    finally:
        proxy.release()
        proxy.stop()
    assert done.returncode == 0, done.stderr
    assert "aborted 1 orphaned upload(s)" in done.stdout
    assert _s3_uploads(cloud) == [("tool/x.bin", foreign["UploadId"])]
    assert sha256(cloud.decrypt_target("large/0.bin")) == sha256(data)


def test_azure_resume_aborts_its_own_staged_blocks_only(
    tmp_path: Path, azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv(ENV["azure"], azurite.connection_string)
    clear_cache()
    name = f"dst-{uuid.uuid4().hex[:12]}"
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = blobs.create_container(name)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"payload")
    cfg_path = tmp_path / "bascule.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "project": "foreign", "journal": "state/journal.db",
        "endpoints": {"src": {"kind": "local", "path": str(tmp_path / "src")},
                      "az": {"kind": "azure-blob", "connection_string_env": ENV["azure"]}},
        "datasets": [{"name": "d", "source": {"endpoint": "src"},
                      "target": {"endpoint": "az", "container": name}, "encrypt": False}],
    }))  # fmt: skip
    cfg = load_config(cfg_path)
    # Another writer's staged (uncommitted) blocks; one of them named in our block-id format.
    look_alike = base64.b64encode(f"{'e' * 32}:000001".encode()).decode()
    for key, block_id in (("tool/theirs.bin", "Zm9yZWlnbg=="), ("tool/look-alike.bin", look_alike)):
        container.get_blob_client(key).stage_block(block_id, b"theirs")
    # What a crash between journaling an upload and journaling its object leaves.
    journal = service.open_journal(cfg, create=True)
    assert journal is not None
    target = connector(service.target_ref(cfg, cfg.datasets[0]))
    uploads = Uploads(journal)
    row = uploads.opening("d", "ours.bin", 1, [])
    assert isinstance(target, PartWriterOpener)
    writer = target.open_writer("ours.bin")
    uploads.opened(row, writer.resume_token)
    writer.write_part(1, b"ours, half written")
    journal.close()

    outcome = service.migrate(cfg, None)

    assert outcome.stats.orphans_aborted == 1
    listed = container.list_blobs(include=["uncommittedblobs"])
    assert sorted(b.name for b in listed) == ["a.bin", "tool/look-alike.bin", "tool/theirs.bin"]
    for key in ("tool/theirs.bin", "tool/look-alike.bin"):
        _, staged = container.get_blob_client(key).get_block_list("uncommitted")
        assert len(staged) == 1, key
    blobs.close()


@pytest.mark.parametrize("server", ["cloud_moto", "cloud"])
def test_an_open_whose_answer_was_lost_is_aborted_once_the_retry_answers(
    server: str, request: pytest.FixtureRequest
) -> None:
    """CreateMultipartUpload reaches the server, its answer is cut; the retry opens a second
    upload, which carries the object. The first is ours too: aborted in the same run, while
    another tool's upload in the same bucket stays."""
    cloud: CloudSetup = request.getfixturevalue(server)
    data = random.Random(server).randbytes(2 * PART + 7)
    cloud.upload("snds/large/0.bin", data)
    foreign = cloud.s3_client.create_multipart_upload(Bucket=cloud.bucket, Key="tool/x.bin")
    plan = FaultPlan(rate=1, kinds=("reset",), max_faults=1, applies=_is_create)
    proxy = FaultProxy(cloud.s3.endpoint_url, plan).start()
    config = cloud.config_dict(concurrency=1)
    config["endpoints"]["ovh-gra"]["endpoint_url"] = proxy.url
    config["datasets"][0]["target"]["prefix"] = ""  # the whole bucket
    path = cloud.write_config(config)
    try:
        done = subprocess.run([*BASCULE, "migrate", "-c", str(path)], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    finally:
        proxy.stop()
    assert done.returncode == 0, done.stderr
    assert proxy.injected["reset"] == 1
    assert _s3_uploads(cloud) == [("tool/x.bin", foreign["UploadId"])]
    assert sha256(cloud.decrypt_target("large/0.bin")) == sha256(data)

"""A run resumes only the multipart uploads opened under its own part checksum: one opened
under the other (the endpoint's `part_checksum` changed between runs) is aborted and its
object sent again, since its parts could not be added to nor the upload completed.

moto reports the algorithm an upload declared (ListMultipartUploads' ChecksumAlgorithm) and
the completed object's SHA-256, so both sides of the switch can be read off the target."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from bascule.cli.app import app
from bascule.config import load_config
from bascule.errors import Interrupted
from bascule.migration import service
from tests.integration.cloud import CloudSetup, MiB, StopAfter

pytestmark = [pytest.mark.servers]

PARTS = 5  # 23 MiB in parts of 5 MiB


def _config(cloud: CloudSetup, part_checksum: str) -> Any:
    data = cloud.config_dict(encrypt=True, concurrency=1)
    data["endpoints"]["ovh-gra"]["part_checksum"] = part_checksum
    return load_config(cloud.write_config(data))


def _uploads(cloud: CloudSetup) -> list[dict[str, Any]]:
    listed = cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket)
    return list(listed.get("Uploads", []))


def _interrupted_upload(cloud: CloudSetup, part_checksum: str) -> tuple[bytes, dict[str, Any]]:
    data = os.urandom(23 * MiB + 7)
    cloud.upload("snds/big.parquet", data)
    stop = threading.Event()
    runner = StopAfter(2, stop)
    with pytest.raises(Interrupted):
        service.migrate(_config(cloud, part_checksum), runner=runner, stop=stop)
    runner.shutdown()
    (upload,) = _uploads(cloud)
    return data, upload


def test_an_upload_opened_under_sha256_is_restarted_under_content_md5(
    cloud_moto: CloudSetup,
) -> None:
    cloud = cloud_moto
    data, upload = _interrupted_upload(cloud, "sha256")
    assert upload.get("ChecksumAlgorithm") == "SHA256"
    cfg = _config(cloud, "content-md5")
    planned = CliRunner().invoke(app, ["plan", "-c", str(cfg.source_path)])
    assert planned.exit_code == 0, planned.output
    notice = (
        "1 unfinished upload(s) on endpoints.ovh-gra were opened with part_checksum sha256, "
        "which is now content-md5: migrate aborts them and sends those objects again"
    )
    assert notice in " ".join(planned.stdout.split())  # said before anything is written
    with structlog.testing.capture_logs() as events:
        outcome = service.migrate(cfg)
    assert outcome.stats.objects_committed == 1
    assert outcome.stats.parts_sent == PARTS  # every part again, in a new upload
    assert _uploads(cloud) == []  # the old upload was aborted, the new one completed
    head = cloud.s3_client.head_object(
        Bucket=cloud.bucket, Key="hdh/big.parquet", ChecksumMode="ENABLED"
    )
    assert not head.get("ChecksumSHA256")  # completed under Content-MD5
    assert cloud.decrypt_target("hdh/big.parquet") == data
    (said,) = [e for e in events if e["event"] == "object.upload_restarted"]
    assert (said["opened_with"], said["part_checksum"]) == ("sha256", "content-md5")
    assert service.stale_upload_notices(cfg) == []  # nothing left to restart


def test_an_upload_opened_under_content_md5_is_restarted_under_sha256(
    cloud_moto: CloudSetup,
) -> None:
    cloud = cloud_moto
    data, upload = _interrupted_upload(cloud, "content-md5")
    assert not upload.get("ChecksumAlgorithm")
    outcome = service.migrate(_config(cloud, "sha256"))
    assert outcome.stats.parts_sent == PARTS
    assert _uploads(cloud) == []
    head = cloud.s3_client.head_object(
        Bucket=cloud.bucket, Key="hdh/big.parquet", ChecksumMode="ENABLED"
    )
    assert head.get("ChecksumSHA256")  # the new upload declared SHA256
    assert cloud.decrypt_target("hdh/big.parquet") == data


def test_the_same_checksum_resumes_the_upload(cloud_moto: CloudSetup) -> None:
    cloud = cloud_moto
    data, upload = _interrupted_upload(cloud, "sha256")
    assert upload.get("ChecksumAlgorithm") == "SHA256"
    assert service.stale_upload_notices(_config(cloud, "sha256")) == []
    with structlog.testing.capture_logs() as events:
        outcome = service.migrate(_config(cloud, "sha256"))
    assert 0 < outcome.stats.parts_sent < PARTS  # only the parts the first run left
    assert _uploads(cloud) == []
    assert cloud.decrypt_target("hdh/big.parquet") == data
    assert not [e for e in events if e["event"] == "object.upload_restarted"]

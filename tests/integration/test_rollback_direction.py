"""The other direction (rollback): S3 as the source, Azure Blob as the target, encrypted and
in parts (staged blocks), interrupted and resumed with no uncommitted block left behind."""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any

import pytest

from bascule.config import load_config
from bascule.connectors.azure.connector import AzureBlobConnector
from bascule.errors import Interrupted
from bascule.migration import service
from tests.integration.cloud import ENV, CloudSetup, MiB, StopAfter, sha256


def _reverse(cloud: CloudSetup) -> dict[str, Any]:
    """The rollback config: the S3 bucket's hdh/ prefix back into a fresh Azure container."""
    data = cloud.config_dict(concurrency=1, max_bytes_in_flight="5MiB")
    back = f"back-{os.urandom(4).hex()}"
    cloud.blobs.create_container(back)
    data["datasets"] = [{
        "name": "rollback",
        "source": {"endpoint": "ovh-gra", "bucket": cloud.bucket, "prefix": "hdh/"},
        "target": {"endpoint": "azure-fc", "container": back, "prefix": "restored/"},
        "encrypt": True,
    }]  # fmt: skip
    data["journal"] = "state/rollback.db"
    return data


def test_s3_to_azure_encrypted_in_blocks_resumes_and_leaves_no_uncommitted_block(
    cloud: CloudSetup,
) -> None:
    objects = {"hdh/big.parquet": os.urandom(23 * MiB + 5), "hdh/small é.csv": b"a;b\n1;2\n"}
    for key, data in objects.items():
        cloud.s3_client.put_object(Bucket=cloud.bucket, Key=key, Body=data)
    config_data = _reverse(cloud)
    cfg = load_config(cloud.write_config(config_data))
    stop = threading.Event()
    runner = StopAfter(1, stop)
    with pytest.raises(Interrupted):
        service.migrate(cfg, runner=runner, stop=stop)
    runner.shutdown()
    outcome = service.migrate(cfg)
    assert outcome.stats.objects_committed >= 1
    container = config_data["datasets"][0]["target"]["container"]
    target = AzureBlobConnector(container, connection_string=os.environ[ENV["azure"]])
    assert list(target.list_uploads()) == []
    for key, data in objects.items():
        restored = key.replace("hdh/", "restored/", 1)
        assert target.stat(restored).metadata.get("bascule-encryption") == "age-v1"
        stored = target.open_read(restored).read()
        plain = subprocess.run(["age", "-d", "-i", str(cloud.identity_file)], input=stored,
                               capture_output=True, check=True).stdout  # fmt: skip
        assert sha256(plain) == sha256(data), key

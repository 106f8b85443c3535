"""A multipart upload is committed off the coordinator thread (which keeps feeding and
settling parts meanwhile), is stat'ed once after its commit (a HEAD costs `rclone serve
s3` an MD5 of the whole object), and is journaled only once its commit has returned."""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

import pytest

from bascule.config import load_config
from bascule.connectors.s3.rest import S3Rest
from bascule.migration import service
from tests.integration.cloud import CloudSetup, MiB

pytestmark = [pytest.mark.servers]


def test_commits_run_on_commit_threads_and_stat_once(
    cloud_moto: CloudSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = cloud_moto
    bodies = {f"snds/big{i}.parquet": os.urandom(11 * MiB) for i in range(3)}
    for key, body in bodies.items():
        cloud.upload(key, body)
    committed_on: list[str] = []
    heads: Counter[str] = Counter()
    real_complete, real_head = S3Rest.complete_upload, S3Rest.head

    def complete(self: S3Rest, key: str, upload_id: str, parts: Any) -> str:
        committed_on.append(threading.current_thread().name)
        return real_complete(self, key, upload_id, parts)

    def head(self: S3Rest, key: str, checksum_mode: bool) -> Any:
        heads[key] += 1
        return real_head(self, key, checksum_mode)

    monkeypatch.setattr(S3Rest, "complete_upload", complete)
    monkeypatch.setattr(S3Rest, "head", head)
    cfg = load_config(cloud.write_config(cloud.config_dict(encrypt=True)))
    outcome = service.migrate(cfg)

    assert outcome.stats.objects_committed == 3
    assert len(committed_on) == 3
    assert all(name.startswith("commit") for name in committed_on), committed_on
    targets = {key.replace("snds/", "hdh/") for key in bodies}
    assert dict(heads) == dict.fromkeys(targets, 1)  # one stat per object, after its commit
    journal = service.open_journal(cfg, create=False)
    assert journal is not None
    try:
        done = {r.target_key for r in journal.objects("snds", "committed")}
    finally:
        journal.close()
    assert done == targets
    for key, body in bodies.items():
        assert cloud.decrypt_target(key.replace("snds/", "hdh/")) == body

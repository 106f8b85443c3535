"""The provider's part-count limit, enforced by the wire, not by bascule's word.

Scaleway takes at most 1,000 parts per multipart upload. Proving that on the real limit
would take objects of 5 GB and more, so the same rule is proved at a proportionally smaller
scale: moto behind a proxy that refuses any part number above 4 (400 InvalidArgument, as S3
answers), the target endpoint presented as Scaleway fr-par with `max_parts: 4`.

- told the limit, the planner widens parts (5 MiB -> 10 MiB for a 21 MiB object), `plan`
  says so, and the copy arrives whole: the age CLI decrypts it to the source bytes, and no
  part number above 4 ever reached the proxy;
- not told (the preset's 1,000), the same object is cut in 5 parts, part 5 is refused, and
  nothing is committed: the proxy does refuse, so the first case proves the widening.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.proxy import FaultPlan, FaultProxy
from tests.integration.cloud import CloudSetup, MiB, sha256

pytestmark = [pytest.mark.servers, pytest.mark.slow]
BASCULE = [sys.executable, "-m", "bascule.cli.app"]
LIMIT = 4
SIZE = 21 * MiB  # 5 parts of 5 MiB, 3 parts of 10 MiB
KEY = "snds/big/claims.parquet"


@pytest.fixture()
def cloud(cloud_moto: CloudSetup) -> CloudSetup:
    return cloud_moto


@pytest.fixture()
def proxy(cloud: CloudSetup) -> Iterator[FaultProxy]:
    started = FaultProxy(cloud.s3.endpoint_url, FaultPlan(rate=0.0, max_part_number=LIMIT))
    started.start()
    try:
        yield started
    finally:
        started.stop()


def scaleway_config(cloud: CloudSetup, proxy_url: str, max_parts: int | None) -> Path:
    """The target presented as Scaleway fr-par, its endpoint overridden to the proxy."""
    data = cloud.config_dict(encrypt=True)
    target = data["endpoints"]["ovh-gra"]
    target.update(provider="scaleway", region="fr-par", endpoint_url=proxy_url)
    if max_parts is not None:
        target["max_parts"] = max_parts
    data["endpoints"] = {"azure-fc": data["endpoints"]["azure-fc"], "scaleway-fr-par": target}
    data["datasets"][0]["target"]["endpoint"] = "scaleway-fr-par"
    return cloud.write_config(data)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASCULE, *args], capture_output=True, text=True, timeout=300)


def test_parts_widen_to_the_limit_and_the_object_arrives_whole(
    cloud: CloudSetup, proxy: FaultProxy
) -> None:
    data = random.Random(14).randbytes(SIZE)
    cloud.upload(KEY, data)
    config = scaleway_config(cloud, proxy.url, max_parts=LIMIT)

    plan = run_cli("plan", "-c", str(config))
    assert plan.returncode == 0, plan.stderr
    assert (
        "part size: snds:snds/big/claims.parquet in 3 parts of 10.0 MiB "
        "(transfer.part_size 5.0 MiB would exceed the target's part limit)"
    ) in " ".join(plan.stdout.split())  # the console wraps long lines

    migrate = run_cli("migrate", "-c", str(config))
    assert migrate.returncode == 0, migrate.stderr
    assert proxy.refused_parts == []
    assert sorted(set(proxy.part_numbers)) == [1, 2, 3]
    assert sha256(cloud.decrypt_target("hdh/big/claims.parquet")) == sha256(data)
    head = cloud.s3_client.head_object(Bucket=cloud.bucket, Key="hdh/big/claims.parquet")
    assert head["ETag"].strip('"').endswith("-3")


def test_without_the_limit_the_part_above_it_is_refused(
    cloud: CloudSetup, proxy: FaultProxy
) -> None:
    cloud.upload(KEY, random.Random(15).randbytes(SIZE))
    config = scaleway_config(cloud, proxy.url, max_parts=None)

    migrate = run_cli("migrate", "-c", str(config))
    assert migrate.returncode == 3, migrate.stderr
    assert "Traceback" not in migrate.stderr
    assert proxy.refused_parts and set(proxy.refused_parts) == {5}
    assert cloud.target_keys("hdh/") == []


def test_a_limit_above_the_preset_is_a_config_error(cloud: CloudSetup, proxy: FaultProxy) -> None:
    config = scaleway_config(cloud, proxy.url, max_parts=2000)
    proc = run_cli("plan", "-c", str(config))
    assert proc.returncode == 2
    assert "max_parts 2000 is outside 1..1000, the scaleway limit" in proc.stderr

"""S3 provider presets (quirks/*.yaml) and what the S3 connector puts on the wire."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest

from bascule.connectors.s3.connector import S3Connector
from bascule.connectors.s3.presets import endpoint_for, load_quirks
from bascule.errors import ConfigError
from tests.conftest import S3Server, new_container_name
from tests.faults.proxy import FaultPlan, FaultProxy

OVH_REGIONS = ["gra", "sbg", "rbx", "eu-west-par", "de", "uk", "waw", "bhs"]


@pytest.mark.parametrize("region", OVH_REGIONS)
def test_ovhcloud_regions_map_to_their_endpoint(region: str) -> None:
    assert endpoint_for("ovhcloud", region, None) == f"https://s3.{region}.io.cloud.ovh.net"


@pytest.mark.parametrize("region", ["fr-par", "nl-ams", "pl-waw"])
def test_scaleway_regions_map_to_their_endpoint(region: str) -> None:
    assert endpoint_for("scaleway", region, None) == f"https://s3.{region}.scw.cloud"


def test_scaleway_preset_states_its_own_limits() -> None:
    """Scaleway's multipart documentation: 1,000 parts, 5 MB to 5 GB each, 5 TB per object."""
    quirks = load_quirks("scaleway")
    assert (quirks.max_parts, quirks.min_part_size_bytes) == (1000, 5 * 1024 * 1024)
    assert (quirks.max_part_size_bytes, quirks.max_object_size_bytes) == (5 * 10**9, 5 * 10**12)
    assert quirks.addressing_style == "virtual"
    assert quirks.part_checksum == "sha256"  # composite SHA-256 on multipart uploads
    caps = S3Connector("b", region="fr-par", provider="scaleway").capabilities
    assert (caps.max_parts, caps.max_part_size, caps.max_object_size) == (1000, 5e9, 5e12)
    assert (
        S3Connector("b", region="fr-par", provider="scaleway", max_parts=4).capabilities.max_parts
        == 4
    )
    with pytest.raises(ConfigError, match=r"outside 1\.\.1000, the scaleway limit"):
        S3Connector("b", region="fr-par", provider="scaleway", max_parts=1001)
    with pytest.raises(ConfigError, match="fr-par, nl-ams, pl-waw"):
        endpoint_for("scaleway", "gra", None)


def test_endpoint_url_overrides_the_preset() -> None:
    assert endpoint_for("ovhcloud", "gra", "http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def test_unknown_region_and_provider_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="gra, sbg"):
        endpoint_for("ovhcloud", "mars-1", None)
    with pytest.raises(ConfigError, match="ovhcloud"):
        load_quirks("nowhere")


def test_presets_declare_s3_part_limits() -> None:
    for provider in ("aws", "ovhcloud", "other", "rclone"):
        quirks = load_quirks(provider)
        assert quirks.min_part_size_bytes == 5 * 1024 * 1024
        assert quirks.max_parts == 10_000
    assert not load_quirks("rclone").if_match_read


def test_requests_carry_a_plain_checksum_header_and_no_trailer(moto_s3: S3Server) -> None:
    """OVHcloud rejects aws-chunked checksum trailers: only plain headers may be sent, on
    the SDK's requests and on the data path's alike (seen on the wire, through a proxy)."""
    bucket = new_container_name()
    proxy = FaultProxy(moto_s3.endpoint_url, FaultPlan(rate=0.0)).start()
    try:
        connector = S3Connector(
            bucket,
            endpoint_url=proxy.url,
            region=moto_s3.region,
            access_key_id=moto_s3.access_key_id,
            secret_access_key=moto_s3.secret_access_key,
            provider="other",
        )
        moto_s3.client(proxy.url).create_bucket(Bucket=bucket)
        data = b"part bytes" * 100
        connector.put("small.bin", io.BytesIO(data), len(data))
        writer = connector.open_writer("multi.bin")
        writer.write_part(1, data)
        writer.abort()
        sent = list(proxy.received_headers)
    finally:
        proxy.stop()
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    uploads = [h for h in sent if "content-md5" in h]
    assert [h["content-md5"] for h in uploads] == [md5, md5]  # the put and the part
    for headers in sent:
        assert "x-amz-trailer" not in headers
        assert "aws-chunked" not in headers.get("content-encoding", "")
        assert not any(k.startswith("x-amz-checksum-") for k in headers)

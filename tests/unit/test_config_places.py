"""Load-time refusals about *where* data goes: a target that overlaps a source or another
target (even through another endpoint entry naming the same store), and plain HTTP to a
non-loopback host by any spelling the SDKs accept (resolved the way each client resolves it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.age.stream import X25519Identity
from bascule.config import load_config
from bascule.errors import ConfigError

IDENTITY = X25519Identity.generate()
RECIPIENT = str(IDENTITY.recipient())
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _local(tmp_path: Path, source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    (tmp_path / "data").mkdir(exist_ok=True)
    return {
        "project": "p",
        "endpoints": {"disk": {"kind": "local", "path": str(tmp_path / "data")}},
        "encryption": {"recipients": [RECIPIENT]},
        "datasets": [{"name": "ds", "source": source, "target": target}],
    }


def _load(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("source_prefix", "target_prefix"),
    [("", ""), ("dcir/", "dcir/"), ("", "enc/"), ("dcir/", "dcir/enc/"), ("dcir/enc/", "dcir/")],
)
def test_a_target_inside_its_source_is_refused(
    tmp_path: Path, source_prefix: str, target_prefix: str
) -> None:
    data = _local(
        tmp_path,
        {"endpoint": "disk", "prefix": source_prefix},
        {"endpoint": "disk", "prefix": target_prefix},
    )
    message = _load(tmp_path, data)
    assert "datasets.0.target" in message and "overlaps its source" in message


def test_sibling_prefixes_on_one_store_are_accepted(tmp_path: Path) -> None:
    data = _local(
        tmp_path, {"endpoint": "disk", "prefix": "in/"}, {"endpoint": "disk", "prefix": "inside/"}
    )
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).datasets[0].target.prefix == "inside/"


def test_two_local_entries_on_one_folder_are_the_same_store(tmp_path: Path) -> None:
    (tmp_path / "data" / "c").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    data = _local(
        tmp_path, {"endpoint": "disk", "container": "c"}, {"endpoint": "other", "prefix": "c/x/"}
    )
    data["endpoints"]["other"] = {"kind": "local", "path": str(tmp_path / "alias" / ".")}
    message = _load(tmp_path, data)
    assert "'disk'" in message and "'other'" in message and "same store" in message


def test_two_datasets_whose_targets_overlap_are_refused(tmp_path: Path) -> None:
    data = _local(
        tmp_path, {"endpoint": "disk", "prefix": "a/"}, {"endpoint": "disk", "prefix": "out/"}
    )
    second = {"name": "ds2", "source": {"endpoint": "disk", "prefix": "b/"},
              "target": {"endpoint": "disk", "prefix": "out/b/"}}  # fmt: skip
    data["datasets"].append(second)
    message = _load(tmp_path, data)
    assert "datasets.1.target" in message and "'ds'" in message and "'ds2'" in message


def test_a_target_inside_another_datasets_source_is_refused(tmp_path: Path) -> None:
    data = _local(
        tmp_path, {"endpoint": "disk", "prefix": "a/"}, {"endpoint": "disk", "prefix": "out/"}
    )
    second = {"name": "ds2", "source": {"endpoint": "disk", "prefix": "b/"},
              "target": {"endpoint": "disk", "prefix": "a/copy/"}}  # fmt: skip
    data["datasets"].append(second)
    assert "source of dataset 'ds'" in _load(tmp_path, data)


def _s3(url: str) -> dict[str, Any]:
    return {"kind": "s3", "endpoint_url": url, "access_key_id_env": "T_ID",
            "secret_access_key_env": "T_SECRET"}  # fmt: skip


def test_two_s3_entries_with_one_url_and_bucket_are_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_ID", "id-value")
    monkeypatch.setenv("T_SECRET", "secret-value")
    data = _local(tmp_path, {"endpoint": "a", "bucket": "b", "prefix": "in/"},
                  {"endpoint": "b", "bucket": "b", "prefix": "in/enc/"})  # fmt: skip
    data["endpoints"] = {"a": _s3("https://s3.gra.example.eu"),
                         "b": _s3("HTTPS://S3.GRA.example.eu:443/")}  # fmt: skip
    assert "overlaps its source" in _load(tmp_path, data)
    data["endpoints"]["b"] = _s3("https://s3.sbg.example.eu")
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).datasets[0].target.endpoint == "b"


def test_azure_connection_string_and_account_url_of_one_account_are_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={AZ_KEY}"
    monkeypatch.setenv("T_CONN", conn)
    data = _local(tmp_path, {"endpoint": "a", "container": "c", "prefix": "x/"},
                  {"endpoint": "b", "container": "c", "prefix": ""})  # fmt: skip
    data["endpoints"] = {"a": {"kind": "azure-blob", "connection_string_env": "T_CONN"},
                         "b": {"kind": "azure-blob",
                               "account_url": "https://acct.blob.core.windows.net"}}  # fmt: skip
    message = _load(tmp_path, data)
    assert "overlaps its source" in message and AZ_KEY not in message


def test_one_rclone_remote_under_two_names_is_the_same_store(tmp_path: Path) -> None:
    data = _local(
        tmp_path,
        {"endpoint": "a", "bucket": "b"},
        {"endpoint": "b", "bucket": "b", "prefix": "enc/"},
    )
    data["endpoints"] = {"a": {"kind": "rclone", "remote": "store"},
                         "b": {"kind": "rclone", "remote": "store"}}  # fmt: skip
    assert "overlaps its source" in _load(tmp_path, data)


# -- plain HTTP by any spelling ---------------------------------------------------------------


def _azure_conn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conn: str) -> dict[str, Any]:
    monkeypatch.setenv("T_CONN", conn)
    data = _local(
        tmp_path, {"endpoint": "az", "container": "c"}, {"endpoint": "disk", "prefix": "out/"}
    )
    data["endpoints"]["az"] = {"kind": "azure-blob", "connection_string_env": "T_CONN"}
    return data


@pytest.mark.parametrize(
    "conn",
    [
        f"BLOBENDPOINT=http://blob.example.eu/acct;AccountName=acct;AccountKey={AZ_KEY}",
        f"blobendpoint=HTTP://blob.example.eu/acct;accountname=acct;accountkey={AZ_KEY}",
        f"AccountName=acct;AccountKey={AZ_KEY};BlobEndpoint=Http://10.0.0.5:10000/acct",
    ],
)
def test_plain_http_in_a_connection_string_is_refused_in_any_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conn: str
) -> None:
    message = _load(tmp_path, _azure_conn(tmp_path, monkeypatch, conn))
    assert "plain HTTP to" in message and AZ_KEY not in message


def test_plain_http_to_loopback_stays_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = f"BLOBENDPOINT=http://127.0.0.1:10000/acct;AccountName=acct;AccountKey={AZ_KEY}"
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(_azure_conn(tmp_path, monkeypatch, conn)))
    assert load_config(path).endpoints["az"].kind == "azure-blob"


def test_an_uppercase_http_account_url_is_refused(tmp_path: Path) -> None:
    data = _local(
        tmp_path, {"endpoint": "az", "container": "c"}, {"endpoint": "disk", "prefix": "out/"}
    )
    data["endpoints"]["az"] = {"kind": "azure-blob", "account_url": "HTTP://acct.blob.example.eu"}
    assert "plain HTTP to acct.blob.example.eu" in _load(tmp_path, data)


def _aws(tmp_path: Path, **endpoint: Any) -> dict[str, Any]:
    data = _local(
        tmp_path, {"endpoint": "disk", "prefix": "in/"}, {"endpoint": "s3", "bucket": "b"}
    )
    data["endpoints"]["s3"] = {"kind": "s3", **endpoint}
    return data


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_an_s3_endpoint_following_the_environment_to_plain_http_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "HTTP://s3.example.eu")
    message = _load(tmp_path, _aws(tmp_path, provider="aws", region="eu-west-3"))
    assert "plain HTTP to s3.example.eu" in message and "endpoints.s3" in message


def test_provider_other_needs_an_endpoint_url(tmp_path: Path) -> None:
    message = _load(tmp_path, _aws(tmp_path, provider="other"))
    assert "endpoints.s3.endpoint_url" in message and "provider other" in message


def test_an_rclone_remote_over_plain_http_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RCLONE_CONFIG_FAR_TYPE", "s3")
    monkeypatch.setenv("RCLONE_CONFIG_FAR_ENDPOINT", "Http://s3.example.eu")
    data = _local(tmp_path, {"endpoint": "disk", "prefix": "in/"}, {"endpoint": "r", "bucket": "b"})
    data["endpoints"]["r"] = {"kind": "rclone", "remote": "far"}
    message = _load(tmp_path, data)
    assert "endpoints.r" in message and "plain HTTP to s3.example.eu" in message


def test_an_rclone_remote_from_its_config_file_over_plain_http_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "rclone.conf"
    conf.write_text("[far]\ntype = webdav\nurl = http://dav.example.eu/files\n")
    monkeypatch.setenv("RCLONE_CONFIG", str(conf))
    data = _local(tmp_path, {"endpoint": "disk", "prefix": "in/"}, {"endpoint": "r", "bucket": "b"})
    data["endpoints"]["r"] = {"kind": "rclone", "remote": "far"}
    assert "plain HTTP to dav.example.eu" in _load(tmp_path, data)


# -- a secret key where a recipient belongs -----------------------------------------------------


@pytest.mark.parametrize("spacing", [" ", "\t", "  ", "\n"])
def test_a_secret_key_pasted_with_blanks_is_never_printed(tmp_path: Path, spacing: str) -> None:
    secret = IDENTITY.to_secret_string()
    data = _local(
        tmp_path, {"endpoint": "disk", "prefix": "in/"}, {"endpoint": "disk", "prefix": "out/"}
    )
    data["encryption"]["recipients"] = [spacing + secret + spacing]
    message = _load(tmp_path, data)
    assert "never the secret key" in message
    assert secret[16:] not in message and secret[20:40] not in message


# -- the clients themselves, when built (a worker's environment may differ) --------------------


def test_an_s3_client_built_towards_plain_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from bascule.config import S3Endpoint
    from bascule.endpoints import EndpointRef, build_connector

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "hTTp://s3.example.eu")
    endpoint = S3Endpoint(kind="s3", provider="aws", region="eu-west-3")
    with pytest.raises(ConfigError, match=r"endpoints.far: plain HTTP to s3.example.eu"):
        build_connector(EndpointRef.of("far", endpoint, "bucket"))


def test_an_azure_client_built_towards_plain_http_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bascule.config import AzureBlobEndpoint
    from bascule.endpoints import EndpointRef, build_connector

    conn = f"blobEndpoint=HTTP://blob.example.eu/acct;accountName=acct;accountKey={AZ_KEY}"
    monkeypatch.setenv("T_CONN", conn)
    endpoint = AzureBlobEndpoint(kind="azure-blob", connection_string_env="T_CONN")
    with pytest.raises(ConfigError, match=r"endpoints.az: plain HTTP to blob.example.eu"):
        build_connector(EndpointRef.of("az", endpoint, "c"))

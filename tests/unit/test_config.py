"""bascule.yaml validation: each problem is one line naming the file, the key path and a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.age.stream import X25519Identity
from bascule.config import load_config, parse_size
from bascule.errors import ConfigError

RECIPIENT = str(X25519Identity.generate().recipient())


def _base() -> dict[str, Any]:
    return {
        "project": "p",
        "deadline": "2027-01-31",
        "endpoints": {
            "azure-fc": {"kind": "azure-blob", "connection_string_env": "T_AZ_CONN"},
            "ovh-gra": {"kind": "s3", "provider": "ovhcloud", "region": "gra",
                        "endpoint_url": "http://127.0.0.1:9000",
                        "access_key_id_env": "T_S3_ID", "secret_access_key_env": "T_S3_SECRET"},
        },
        "encryption": {"recipients": [RECIPIENT], "identity_file_env": "T_AGE_ID"},
        "datasets": [{"name": "dcir", "source": {"endpoint": "azure-fc", "container": "snds",
                                                 "prefix": "dcir/"},
                      "target": {"endpoint": "ovh-gra", "bucket": "hdh", "prefix": "dcir/"}}],
    }  # fmt: skip


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("T_AZ_CONN", "T_S3_ID", "T_S3_SECRET"):
        monkeypatch.setenv(var, "x" * 20)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_valid_config_loads_with_defaults(tmp_path: Path, env: None) -> None:
    cfg = load_config(_write(tmp_path, _base()))
    assert cfg.dataset("dcir").encrypt is True
    assert cfg.transfer.part_size == 16 * 1024 * 1024
    assert cfg.journal == tmp_path / ".bascule" / "journal.db"


def _mutate(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value


CASES = [
    ("datasets.0.tagret", {"x": 1}, "datasets.0.tagret: unknown key"),
    ("project", KeyError, "project: required key is missing"),
    ("datasets.0.target.endpoint", "ovh-sbg", "unknown endpoint 'ovh-sbg'"),
    ("encryption.recipients.0", "age1notakey", "encryption.recipients.0"),
    ("encryption.recipients.0", "AGE-SECRET-KEY-1QQQQ", "never the secret key"),
    ("endpoints.ovh-gra.endpoint_url", "http://s3.example.eu", "plain HTTP to s3.example.eu"),
    ("endpoints.ovh-gra.kind", "ftp", "unknown kind"),
    ("transfer", {"part_size": "1MiB"}, "at least 5MiB"),
    ("transfer", {"part_size": "lots"}, "not a size"),
    ("datasets.0.format", "xlsx", "datasets.0.format"),
    ("datasets.0.target.bucket", KeyError, "missing bucket"),
    ("datasets.0.csv", {"delimiter": ";;"}, "datasets.0.csv.delimiter: ';;' is not one character"),
    ("datasets.0.csv", {"delimiter": "\n"}, "datasets.0.csv.delimiter: a line end"),
    ("datasets.0.csv", {"quote": ""}, "datasets.0.csv.quote: '' is not one character"),
    ("datasets.0.csv", {"encoding": "utf-16"}, "datasets.0.csv.encoding: encoding 'utf-16' is not"),
    ("datasets.0.csv", {"encoding": "klingon"}, "datasets.0.csv.encoding: unknown encoding"),
    ("datasets.0.csv", {"delimiter": '"'}, "datasets.0.csv: delimiter and quote are both"),
    ("datasets.0.csv", {"delimiter": "§", "encoding": "utf-8"}, "delimiter '§' is not one byte"),
    ("datasets.0.csv", {"delimiter": "§"}, "not one byte in ASCII"),
    ("datasets.0.csv", {"header": "maybe"}, "datasets.0.csv.header"),
    ("datasets.0.csv", {"delim": ";"}, "datasets.0.csv.delim: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "expected"), CASES)
def test_bad_config_is_one_clear_line(
    tmp_path: Path, env: None, path: str, value: Any, expected: str
) -> None:
    data = _base()
    _mutate(data, path, value)
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bascule.yaml"))
    assert expected in message
    assert "\n" not in message


def test_missing_environment_variable_is_named(
    tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_S3_SECRET")
    with pytest.raises(
        ConfigError, match=r"secret_access_key_env: environment variable T_S3_SECRET"
    ):
        load_config(_write(tmp_path, _base()))


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bascule.yaml"
    path.write_text("project: p\nendpoints: [\n  a: b\n")
    with pytest.raises(ConfigError, match=r"bascule.yaml:\d+: not valid YAML"):
        load_config(path)


def test_insecure_http_can_be_allowed_explicitly(tmp_path: Path, env: None) -> None:
    data = _base()
    data["endpoints"]["ovh-gra"]["endpoint_url"] = "http://s3.example.eu"
    data["endpoints"]["ovh-gra"]["allow_insecure_http"] = True
    assert load_config(_write(tmp_path, data)).endpoints["ovh-gra"].kind == "s3"


@pytest.mark.parametrize(("text", "value"), [("64MiB", 64 << 20), ("450TB", 450 * 10**12), (7, 7)])
def test_parse_size(text: str | int, value: int) -> None:
    assert parse_size(text) == value


def test_a_csv_dialect_loads(tmp_path: Path, env: None) -> None:
    data = _base()
    data["datasets"][0]["csv"] = {"delimiter": "§", "quote": "'", "encoding": "latin-1",
                                  "header": False}  # fmt: skip
    csv = load_config(_write(tmp_path, data)).dataset("dcir").csv
    assert csv is not None
    assert (csv.delimiter, csv.quote, csv.encoding, csv.header) == ("§", "'", "latin-1", False)
    data["datasets"][0]["csv"] = {"delimiter": "\t"}
    csv = load_config(_write(tmp_path, data)).dataset("dcir").csv
    assert csv is not None and (csv.delimiter, csv.quote, csv.encoding) == ("\t", '"', None)


def test_a_csv_dialect_on_a_dataset_of_another_format_is_refused(tmp_path: Path, env: None) -> None:
    data = _base()
    data["datasets"][0].update(format="parquet", csv={"delimiter": ";"})
    with pytest.raises(ConfigError, match=r"datasets\.0\.csv: this dataset's format is parquet"):
        load_config(_write(tmp_path, data))

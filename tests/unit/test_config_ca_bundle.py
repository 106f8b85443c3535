"""`ca_bundle:` on s3 and azure-blob endpoints: resolved beside the config file, checked at load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.config import AzureBlobEndpoint, S3Endpoint, load_config
from bascule.errors import ConfigError
from bascule.sandbox.tls import make_ca_and_server
from tests.unit.test_config import _base

BASCULE = str(Path(sys.executable).parent / "bascule")


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("T_AZ_CONN", "T_S3_ID", "T_S3_SECRET"):
        monkeypatch.setenv(var, "x" * 20)


def _write(tmp_path: Path, bundle: str, endpoint: str = "ovh-gra") -> Path:
    data: dict[str, Any] = _base()
    data["endpoints"][endpoint]["ca_bundle"] = bundle
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_bundle_resolves_beside_the_config(tmp_path: Path, env: None) -> None:
    make_ca_and_server(tmp_path / "tls")
    cfg = load_config(_write(tmp_path, "tls/ca.pem"))
    s3 = cfg.endpoints["ovh-gra"]
    assert isinstance(s3, S3Endpoint)
    assert s3.ca_bundle == tmp_path / "tls" / "ca.pem"
    cfg = load_config(_write(tmp_path, "tls/ca.pem", endpoint="azure-fc"))
    azure = cfg.endpoints["azure-fc"]
    assert isinstance(azure, AzureBlobEndpoint)
    assert azure.ca_bundle == tmp_path / "tls" / "ca.pem"


@pytest.mark.parametrize("endpoint", ["ovh-gra", "azure-fc"])
def test_missing_bundle_names_endpoint_and_path(tmp_path: Path, env: None, endpoint: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, "nowhere/ca.pem", endpoint))
    message = str(err.value)
    assert f"endpoints.{endpoint}.ca_bundle" in message
    assert str(tmp_path / "nowhere" / "ca.pem") in message
    assert "does not exist" in message


def test_bundle_that_is_not_pem_is_refused(tmp_path: Path, env: None) -> None:
    files = make_ca_and_server(tmp_path / "tls")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        load_config(_write(tmp_path, str(tmp_path / "bascule.yaml")))
    # A private key is PEM, but not a certificate.
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        load_config(_write(tmp_path, str(files.ca_key)))


def test_bad_bundle_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    config = _write(tmp_path, "ca.pem")
    env = {**os.environ, "T_AZ_CONN": "x" * 20, "T_S3_ID": "x", "T_S3_SECRET": "x"}
    done = subprocess.run(
        [BASCULE, "plan", "-c", str(config)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "endpoints.ovh-gra.ca_bundle" in lines[0]
    assert str(tmp_path / "ca.pem") in lines[0]
    assert not (tmp_path / ".bascule").exists()


def test_server_key_is_private(tmp_path: Path) -> None:
    files = make_ca_and_server(tmp_path / "tls")
    assert files.ca_key.stat().st_mode & 0o777 == 0o600
    assert files.server_key.stat().st_mode & 0o777 == 0o600

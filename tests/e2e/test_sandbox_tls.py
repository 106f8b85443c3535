"""`bascule sandbox up --tls`: Azurite and `rclone serve s3` on HTTPS with a local CA, and
bascule trusting that CA (and only it) through the endpoints' `ca_bundle:`."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bascule.config import AzureBlobEndpoint, S3Endpoint, load_config
from bascule.sandbox import servers
from bascule.sandbox.tls import make_ca_and_server
from tests.conftest import ServerBinaries

BASCULE = str(Path(sys.executable).parent / "bascule")


@dataclass(frozen=True)
class TlsSandbox:
    state_dir: Path
    env: dict[str, str]
    azure_port: int
    s3_port: int


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASCULE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _sourced(env_file: Path) -> dict[str, str]:
    done = subprocess.run(
        ["bash", "-c", f"source {env_file} && env -0"], capture_output=True, check=True
    )
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


@pytest.fixture(scope="module")
def tls_sandbox(
    tmp_path_factory: pytest.TempPathFactory, server_binaries: ServerBinaries
) -> Iterator[TlsSandbox]:
    root = tmp_path_factory.mktemp("tls-sandbox")
    state = root / "sb"
    azure_port, s3_port = servers.free_port(), servers.free_port()
    env = dict(os.environ)
    done = run(
        "sandbox", "up", "--tls", "--state-dir", str(state),
        "--azure-port", str(azure_port), "--s3-port", str(s3_port), cwd=root, env=env,
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        yield TlsSandbox(state, _sourced(state / "env.sh"), azure_port, s3_port)
    finally:
        pids = json.loads((state / "sandbox.json").read_text())["pids"]
        for pid in pids.values():
            servers.stop_pid(int(pid))


def test_servers_speak_https_with_a_certificate_from_the_local_ca(tls_sandbox: TlsSandbox) -> None:
    ca = tls_sandbox.state_dir / "tls" / "ca.pem"
    assert (tls_sandbox.state_dir / "tls" / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    for port in (tls_sandbox.azure_port, tls_sandbox.s3_port):
        url = f"https://127.0.0.1:{port}/"
        assert servers.http_answers(url, ca)
        # The system's trust store does not know the sandbox's CA.
        context = ssl.create_default_context()
        with (
            pytest.raises(ssl.SSLCertVerificationError),
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ):
            context.wrap_socket(sock, server_hostname="127.0.0.1")


def test_written_config_trusts_the_ca_over_https(tls_sandbox: TlsSandbox) -> None:
    cfg = load_config(tls_sandbox.state_dir / "bascule.yaml", check_env=False)
    ca = tls_sandbox.state_dir / "tls" / "ca.pem"
    azure, s3 = cfg.endpoints["azure-fc"], cfg.endpoints["scaleway-fr-par"]
    assert isinstance(azure, AzureBlobEndpoint) and isinstance(s3, S3Endpoint)
    assert azure.ca_bundle == ca and s3.ca_bundle == ca
    assert s3.endpoint_url == f"https://127.0.0.1:{tls_sandbox.s3_port}"
    conn = tls_sandbox.env["AZURE_STORAGE_CONNECTION_STRING"]
    assert "DefaultEndpointsProtocol=https;" in conn
    assert f"BlobEndpoint=https://127.0.0.1:{tls_sandbox.azure_port}/devstoreaccount1" in conn


def test_migrate_and_verify_over_https_then_another_ca_is_refused(tls_sandbox: TlsSandbox) -> None:
    sb, cwd, env = tls_sandbox.state_dir, tls_sandbox.state_dir.parent, tls_sandbox.env
    seeded = run(
        "sandbox", "seed", "--state-dir", str(sb), "--scale", "0.01", "--part-size", "256KiB",
        cwd=cwd, env=env,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    config = str(sb / "bascule.yaml")
    migrated = run("migrate", "-c", config, cwd=cwd, env=env)
    assert migrated.returncode == 0, migrated.stderr
    verified = run("verify", "-c", config, "--level", "full", cwd=cwd, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "all verified" in verified.stdout

    # The same config trusting a CA that did not sign the servers' certificate.
    other = make_ca_and_server(cwd / "other-ca")
    text = (sb / "bascule.yaml").read_text()
    wrong = sb / "wrong-ca.yaml"
    wrong.write_text(
        text.replace("ca_bundle: tls/ca.pem", f"ca_bundle: {other.ca_cert}").replace(
            "journal: journal.db", "journal: wrong-ca.db"
        )
    )
    for command in (["migrate"], ["verify", "--level", "full"]):
        refused = run(*command, "-c", str(wrong), cwd=cwd, env=env)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert "certificate" in lines[0] and "ca_bundle" in lines[0]


def test_an_s3_endpoint_without_ca_bundle_trusts_aws_ca_bundle(tls_sandbox: TlsSandbox) -> None:
    """As boto3 and the AWS CLI do: with no `ca_bundle:` on the S3 endpoint, the CA file
    that AWS_CA_BUNDLE names is the one trusted (else certifi's, which refuses the local CA)."""
    sb, cwd = tls_sandbox.state_dir, tls_sandbox.state_dir.parent
    text = (sb / "bascule.yaml").read_text()
    azure_part, s3_part = text.split("kind: s3", 1)
    assert "ca_bundle: tls/ca.pem" in s3_part
    config = sb / "s3-without-ca-bundle.yaml"
    config.write_text(
        azure_part + "kind: s3" + s3_part.replace("ca_bundle: tls/ca.pem", "", 1).replace(
            "journal: journal.db", "journal: s3-without-ca-bundle.db"
        )
    )  # fmt: skip
    env = {k: v for k, v in tls_sandbox.env.items() if k != "AWS_CA_BUNDLE"}
    refused = run("plan", "-c", str(config), cwd=cwd, env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "certificate" in refused.stderr.strip().splitlines()[-1]
    trusted = run("plan", "-c", str(config), cwd=cwd,
                  env={**env, "AWS_CA_BUNDLE": str(sb / "tls" / "ca.pem")})  # fmt: skip
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr

"""`--executor dask+tls://`: a migration over mutual TLS to a LocalCluster whose scheduler and
workers require encryption, with certificates generated here; a client without a
certificate the cluster's CA signed is refused, and plain `dask://` never leaves this machine."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bascule.errors import UsageError
from bascule.runners import TLS_ENV, make_runner
from tests.functional.conftest import LocalConfig, MiB, age_decrypt, sha256

BASCULE = [sys.executable, "-m", "bascule.cli.app"]


@dataclass(frozen=True)
class Pki:
    """PEM files: one CA, and a certificate + key signed by it per role."""

    ca: Path
    certs: dict[str, tuple[Path, Path]]  # role -> (cert, key)

    def env(self, role: str = "client") -> dict[str, str]:
        cert, key = self.certs[role]
        return {TLS_ENV["ca"]: str(self.ca), TLS_ENV["cert"]: str(cert), TLS_ENV["key"]: str(key)}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: str, public: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".key").chmod(0o600)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(root: Path, name: str, roles: tuple[str, ...]) -> Pki:
    """A CA named `name` and, per role, a certificate for 127.0.0.1/localhost it signed."""
    root.mkdir(parents=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        _builder(name, name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca = _write(root / "ca.pem", ca_cert, ca_key)
    certs = {}
    for role in roles:
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert = (
            _builder(f"bascule-{role}", name, key.public_key())
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        path = _write(root / f"{role}.pem", cert, key)
        certs[role] = (path, path.with_suffix(".key"))
    return Pki(ca, certs)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki") / "cluster", "bascule-test-ca",
                    ("scheduler", "worker", "client"))  # fmt: skip


@pytest.fixture(scope="module")
def tls_cluster(pki: Pki) -> Iterator[Any]:
    """A LocalCluster on 127.0.0.1 that speaks TLS only and requires it of every peer."""
    from distributed import LocalCluster
    from distributed.security import Security

    security = Security(
        tls_ca_file=str(pki.ca),
        tls_scheduler_cert=str(pki.certs["scheduler"][0]),
        tls_scheduler_key=str(pki.certs["scheduler"][1]),
        tls_worker_cert=str(pki.certs["worker"][0]),
        tls_worker_key=str(pki.certs["worker"][1]),
        tls_client_cert=str(pki.certs["client"][0]),
        tls_client_key=str(pki.certs["client"][1]),
        require_encryption=True,
    )
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        protocol="tls",
        host="127.0.0.1",
        security=security,
        dashboard_address="127.0.0.1:0",
    )
    try:
        yield cluster
    finally:
        cluster.close()


def _spec(cluster: Any) -> str:
    address = str(cluster.scheduler_address)
    assert address.startswith("tls://127.0.0.1:")
    return "dask+tls://" + address.removeprefix("tls://")


def _bascule(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BASCULE_DASK_TLS_")}
    return subprocess.run(
        [*BASCULE, *argv], env={**base, **env}, capture_output=True, text=True, timeout=300
    )


def test_migrate_over_dask_tls_completes_and_the_scheduler_ran_the_part_tasks(
    tmp_path: Path,
    local_config: LocalConfig,
    identity_file: tuple[Path, str],
    pki: Pki,
    tls_cluster: Any,
) -> None:
    objects = {"in/big.bin": os.urandom(11 * MiB + 7), "in/small é.csv": b"a;b\n1;2\n"}
    for key, data in objects.items():
        (tmp_path / "src" / "c" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "c" / key).write_bytes(data)
    local_config()  # writes bascule.yaml
    argv = ["migrate", "-c", str(tmp_path / "bascule.yaml"), "--executor", _spec(tls_cluster)]
    done = _bascule(argv, pki.env())
    assert done.returncode == 0, done.stderr
    assert "copied 2 objects" in done.stdout
    for key, data in objects.items():
        target = tmp_path / "dst" / "b" / key.replace("in/", "out/", 1)
        assert sha256(age_decrypt(target, identity_file[0])) == sha256(data)
    assert "run_part_with_retries" in tls_cluster.scheduler.task_prefixes


def test_a_client_whose_certificate_another_ca_signed_is_refused(
    tmp_path: Path, pki: Pki, tls_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rogue = make_pki(tmp_path / "rogue", "someone-else", ("client",))
    for name, value in rogue.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(TLS_ENV["ca"], str(pki.ca))  # trusts the scheduler, is not trusted
    with pytest.raises(UsageError, match="refused this client's certificate"):
        make_runner(_spec(tls_cluster), 2)


def test_dask_tls_without_the_certificate_variables_is_one_line_exit_2(
    tmp_path: Path, local_config: LocalConfig, tls_cluster: Any
) -> None:
    local_config()
    argv = ["migrate", "-c", str(tmp_path / "bascule.yaml"), "--executor", _spec(tls_cluster)]
    done = _bascule(argv, {})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{TLS_ENV['ca']} is not set" in lines[0], done.stderr
    assert not (tmp_path / "state" / "journal.db").exists()  # nothing was written


def test_plain_dask_to_a_remote_host_is_refused_before_connecting() -> None:
    with pytest.raises(UsageError, match=r"127\.0\.0\.1/localhost only; use dask\+tls://"):
        make_runner("dask://scheduler.bascule.svc:8786", 2)


def test_plain_dask_to_loopback_still_connects() -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        address = str(cluster.scheduler_address).removeprefix("tcp://")
        runner = make_runner(f"dask://{address}", 1)
        try:
            assert runner.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        finally:
            runner.shutdown()

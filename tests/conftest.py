"""Shared fixtures: real storage servers on 127.0.0.1, and a clean credential environment.

Session-scoped servers (started once, on demand, stopped by pid at session end):

- ``azurite`` -> `AzuriteServer` (connection_string, account_url, port);
- ``rclone_s3`` -> `S3Server` for `rclone serve s3` (partial S3: no conditional requests,
  checksum headers ignored);
- ``moto_s3`` -> `S3Server` for moto's server; its access key is a real moto IAM key, so
  wrong credentials are refused inside `moto_authentication(server)` blocks.

Tests that start the sandbox themselves (`bascule sandbox up`) request ``server_binaries``.
Every test that uses one of these fixtures, or a contract-suite backend that is a server, is
marked ``servers`` at collection (`pytest_collection_modifyitems`): nobody marks by hand, and
`make test-fast` (``-m "not servers and not slow"``) runs the rest without any emulator.

Function-scoped:

- an autouse fixture removes cloud credentials (AWS_*, AZURE_*, OVH_*, RCLONE_CONFIG_*,
  RCLONE_*_KEY...) from the environment, so no test can reach a real account by accident;
- ``connector_factory`` (see its docstring) gives a fresh, empty bucket/container per test,
  for each backend of the contract suite.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bascule.sandbox import servers

if TYPE_CHECKING:
    from bascule.connectors.base import Connector
    from bascule.connectors.s3.connector import S3Connector
    from tests.integration.cloud import CloudSetup

CREDENTIAL_ENV_PREFIXES = ("AWS_", "AZURE_", "OVH_", "RCLONE_CONFIG_", "BASCULE_AGE_")
CREDENTIAL_ENV_NAMES = ("RCLONE_CONFIG", "RCLONE_AUTH_KEY", "AZURE_STORAGE_CONNECTION_STRING")


def pytest_configure(config: pytest.Config) -> None:
    # The sandbox starts servers as detached children and keeps only their pid (they must
    # outlive the CLI call that started them); Python warns when such a Popen object is
    # collected while the child still runs. The fixtures stop every child by pid.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Exception ignored in. <function Popen.__del__"
        ":pytest.PytestUnraisableExceptionWarning",
    )
    config.addinivalue_line(
        "filterwarnings", "ignore:subprocess .* is still running:ResourceWarning"
    )
    # The CLI's console fixes its width from COLUMNS when `bascule.cli` is first imported;
    # tests that need a width pass COLUMNS to the call they make. A COLUMNS already in the
    # environment (pytest-xdist starts its workers with COLUMNS=80) would pin every later call.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


SERVER_FIXTURES = frozenset({"azurite", "rclone_s3", "moto_s3", "server_binaries"})
SERVER_BACKENDS = frozenset({"azure_blob", "s3_rclone", "s3_moto", "rclone"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `servers` every test that reaches an emulator through a fixture."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if fixtures & SERVER_FIXTURES or backend in SERVER_BACKENDS:
            item.add_marker(pytest.mark.servers)


@dataclass(frozen=True)
class AzuriteServer:
    connection_string: str
    account_url: str
    port: int
    pid: int


@dataclass(frozen=True)
class S3Server:
    name: str
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    pid: int

    def client(self, endpoint_url: str | None = None, config: Any = None) -> Any:
        """A boto3 client of this server (or of a proxy in front of it): an independent
        reader and writer for set-up and checks, beside bascule's own requests."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=config,
        )


@pytest.fixture(autouse=True)
def _no_cloud_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every cloud credential from the environment for the duration of a test."""
    for name in list(os.environ):
        if name.startswith(CREDENTIAL_ENV_PREFIXES) or name in CREDENTIAL_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class ServerBinaries:
    azurite: list[str]
    rclone: str


@pytest.fixture(scope="session")
def server_binaries() -> ServerBinaries:
    """The emulators' launchers, for tests that start the sandbox through the CLI.

    Fails (never skips) when one is missing: `make test` installs both."""
    from bascule.connectors.rclone import rclone_binary

    return ServerBinaries(servers.azurite_command(), rclone_binary())


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    base = tmp_path_factory.mktemp("azurite")
    port = servers.free_port()
    proc = servers.start_azurite(base / "data", port, base / "azurite.log")
    try:
        yield AzuriteServer(
            connection_string=servers.azurite_connection_string(port),
            account_url=f"http://{servers.HOST}:{port}/{servers.AZURITE_ACCOUNT}",
            port=port,
            pid=proc.pid,
        )
    finally:
        servers.stop_pid(proc.pid)


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    base = tmp_path_factory.mktemp("rclone-s3")
    port = servers.free_port()
    # rclone refuses very short keys: use ordinary lengths (20 / 40 characters).
    key_id, secret = secrets.token_hex(10), secrets.token_hex(20)
    proc = servers.start_rclone_s3(base / "data", port, base / "rclone.log", key_id, secret)
    try:
        yield S3Server("rclone-s3", proc.url, "us-east-1", key_id, secret, proc.pid)
    finally:
        servers.stop_pid(proc.pid)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    base = tmp_path_factory.mktemp("moto")
    port = servers.free_port()
    proc = servers.start_moto(port, base / "moto.log")
    try:
        key_id, secret = _moto_create_user(proc.url)
        yield S3Server("moto", proc.url, "us-east-1", key_id, secret, proc.pid)
    finally:
        servers.stop_pid(proc.pid)


def _moto_create_user(url: str) -> tuple[str, str]:
    """Create an admin IAM user in moto; its access key works once authentication is on."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bootstrap-key-id-000",
        aws_secret_access_key="bootstrap-secret-0000000000000000000000",
    )
    iam.create_user(UserName="bascule-tests")
    iam.put_user_policy(
        UserName="bascule-tests",
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="bascule-tests")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def _moto_set_auth(url: str, unauthenticated_actions: str) -> None:
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=unauthenticated_actions.encode(),
        method="POST",
        # a form content type makes the server parse the body away; send it raw
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


@contextmanager
def moto_authentication(server: S3Server) -> Iterator[None]:
    """Make moto check credentials (IAM keys only) for the duration of the block.

    moto accepts any credentials unless told otherwise, and its signature check refuses
    some valid requests (percent-encoded prefixes, non-ASCII keys), so it is switched on
    only where a test needs wrong credentials refused."""
    _moto_set_auth(server.endpoint_url, "0")
    try:
        yield
    finally:
        _moto_set_auth(server.endpoint_url, "inf")


# --- connectors for the contract suite ------------------------------------------------------

BACKENDS = ["local", "memory", "azure_blob", "s3_rclone", "s3_moto", "rclone"]


@dataclass(frozen=True)
class Backend:
    """One backend under test: how to build a connector on a fresh container, and how to
    build one with the same location but wrong credentials or a missing container."""

    name: str
    make: Callable[[], Connector]
    make_bad_credentials: Callable[[], Connector] | None
    make_missing_container: Callable[[], Connector]
    # A faster writer to the same container, to seed large listings (rclone: its S3 server).
    make_seeder: Callable[[], Connector] | None = None
    # Wrap calls that must see wrong credentials refused (moto checks them only on demand).
    checking_credentials: Callable[[], AbstractContextManager[None]] = nullcontext


def new_container_name() -> str:
    """A bucket/container name valid on S3 and Azure (3-63 lowercase letters, digits, '-')."""
    return f"t-{uuid.uuid4().hex[:20]}"


def s3_connector(server: S3Server, bucket: str, provider: str = "other") -> S3Connector:
    """An S3Connector on `bucket` of `server`, with `provider`'s quirks."""
    from bascule.connectors.s3.connector import S3Connector

    return S3Connector(
        bucket,
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        provider=provider,
    )


def s3_connector_on(server: S3Server, provider: str = "other") -> S3Connector:
    """An S3Connector on a new bucket of `server`, with `provider`'s quirks."""
    connector = s3_connector(server, new_container_name(), provider)
    server.client().create_bucket(Bucket=connector._bucket)
    return connector


def _local_backend(tmp_path: Path) -> Backend:
    from bascule.connectors.local import LocalConnector

    root = tmp_path / "local-root"
    root.mkdir()
    return Backend(
        "local",
        lambda: LocalConnector(root),
        None,
        lambda: LocalConnector(tmp_path / "does-not-exist"),
    )


def _memory_backend() -> Backend:
    from bascule.connectors.memory import MemoryConnector

    connector = MemoryConnector()
    return Backend(
        "memory",
        lambda: connector,
        None,
        lambda: MemoryConnector(exists=False),
    )


def _azure_backend(server: AzuriteServer) -> Backend:
    from azure.storage.blob import BlobServiceClient

    from bascule.connectors.azure.connector import AzureBlobConnector

    container = new_container_name()
    with BlobServiceClient.from_connection_string(server.connection_string) as service:
        service.create_container(container)
    wrong = server.connection_string.replace(
        servers.AZURITE_KEY, "d3Jvbmcta2V5LW5vdC10aGUtYWNjb3VudC1rZXktMDAwMDAwMDAwMDAwMDAwMA=="
    )
    return Backend(
        "azure_blob",
        lambda: AzureBlobConnector(container, connection_string=server.connection_string),
        lambda: AzureBlobConnector(container, connection_string=wrong),
        lambda: AzureBlobConnector(
            new_container_name(), connection_string=server.connection_string
        ),
    )


def _s3_backend(name: str, server: S3Server) -> Backend:

    bucket = new_container_name()
    client = server.client()
    client.create_bucket(Bucket=bucket)
    client.close()
    provider = "rclone" if server.name == "rclone-s3" else "other"

    def make(srv: S3Server = server, bucket_name: str = bucket) -> Connector:
        return s3_connector(srv, bucket_name, provider)

    wrong = replace(server, secret_access_key="x" * 40)
    checking: Callable[[], AbstractContextManager[None]] = nullcontext
    if server.name == "moto":
        checking = lambda: moto_authentication(server)  # noqa: E731
    return Backend(
        name,
        make,
        lambda: make(wrong),
        lambda: make(server, new_container_name()),
        checking_credentials=checking,
    )


def _rclone_backend(server: S3Server) -> Backend:
    from bascule.connectors.rclone import RcloneConnector, s3_remote_env

    s3 = _s3_backend("s3_rclone", server)
    bucket = s3.make().url.removeprefix("s3://")

    def make(srv: S3Server = server, bucket_name: str = bucket) -> Connector:
        env = s3_remote_env(
            "sandbox",
            endpoint_url=srv.endpoint_url,
            region=srv.region,
            access_key_id=srv.access_key_id,
            secret_access_key=srv.secret_access_key,
        )
        return RcloneConnector(f"sandbox:{bucket_name}", env=env)

    return Backend(
        "rclone",
        make,
        lambda: make(replace(server, secret_access_key="x" * 40)),
        lambda: make(server, new_container_name()),
        s3.make,
    )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A `Backend` for each connector under test, on a fresh empty container.

    Servers start lazily: running only `-k local` starts none."""
    name = str(request.param)
    if name == "local":
        return _local_backend(tmp_path)
    if name == "memory":
        return _memory_backend()
    if name == "azure_blob":
        return _azure_backend(request.getfixturevalue("azurite"))
    if name == "s3_rclone":
        return _s3_backend(name, request.getfixturevalue("rclone_s3"))
    if name == "s3_moto":
        return _s3_backend(name, request.getfixturevalue("moto_s3"))
    return _rclone_backend(request.getfixturevalue("rclone_s3"))


@pytest.fixture
def connector_factory(backend: Backend) -> Callable[[], Connector]:
    """Build a connector on this test's fresh, empty container (one per backend param).

    Calling it twice gives two connectors on the same container (e.g. to resume an
    upload from a "restarted" process)."""
    return backend.make


# --- a bascule.yaml on the emulators (Azurite source, S3 target) ------------------------------


@pytest.fixture()
def cloud(
    tmp_path: Path, azurite: AzuriteServer, rclone_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CloudSetup]:
    """Azurite as the source, `rclone serve s3` as the target (see tests/integration/cloud.py)."""
    from tests.integration.cloud import CloudSetup

    setup = CloudSetup(tmp_path, azurite, rclone_s3, monkeypatch)
    yield setup
    setup.close()


@pytest.fixture()
def cloud_moto(
    tmp_path: Path, azurite: AzuriteServer, moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CloudSetup]:
    """Azurite as the source, moto's S3 (IAM users, multipart listing) as the target."""
    from tests.integration.cloud import CloudSetup

    setup = CloudSetup(tmp_path, azurite, moto_s3, monkeypatch)
    yield setup
    setup.close()

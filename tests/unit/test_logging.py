"""Logging: JSON lines to a file, and no secret in it, whatever shape the secret takes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from bascule import logging as blog
from bascule.sandbox import servers
from tests.conftest import ServerBinaries

BASCULE = str(Path(sys.executable).parent / "bascule")
AZURITE_KEY = servers.AZURITE_KEY


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "logs"
    blog.configure_logging(directory, console_level="critical")
    yield directory
    blog.shutdown_logging()
    blog._secrets.clear()


def _log_text() -> str:
    path = blog.current_log_file()
    assert path is not None
    for handler in logging.getLogger().handlers:
        handler.flush()
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"AccountName=devstoreaccount1;AccountKey={AZURITE_KEY}", AZURITE_KEY),
        ("url https://a.blob.core.windows.net/c/x?sv=2022&sig=Zm9vYmFy%2Bx%3D&se=1", "Zm9vYmFy"),
        ("SharedAccessSignature=sv=2022&sig=abc123", "abc123"),
        ("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ", "QQQQ"),
        ("aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY here", "wJalrXUtnFEMI"),
        ("key id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("https://user:hunter2pass@example.org/x", "hunter2pass"),
        ("Authorization: AWS4-HMAC-SHA256 Credential=AKID/2024/gra/s3", "AKID/2024"),
    ],
)
def test_secret_shapes_are_redacted(text: str, secret: str) -> None:
    assert secret not in blog.redact_text(text)


def test_ordinary_values_are_kept() -> None:
    sha1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"  # 40 hex characters: not a key
    event = {"key": "dcir/2023/ER_PRS_F_202301.parquet", "etag": "0x8DB", "sha1": sha1,
             "resume_token": "upload-1", "size": 12}  # fmt: skip
    assert blog.redact_value(event) == event


def test_secret_named_keys_are_redacted_at_any_depth() -> None:
    event = {"outer": [{"Password": "p@ss", "token": 3, "n": {"secret_access_key": "s"}}]}
    assert blog.redact_value(event) == {
        "outer": [{"Password": "***", "token": "***", "n": {"secret_access_key": "***"}}]
    }


@pytest.fixture
def sandbox(tmp_path: Path, server_binaries: ServerBinaries) -> Iterator[dict[str, dict[str, str]]]:
    state_dir = tmp_path / "state"
    ports = ["--azure-port", str(servers.free_port()), "--s3-port", str(servers.free_port())]
    cmd = [BASCULE, "sandbox", "up", "--state-dir", str(state_dir), *ports]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    try:
        state: dict[str, dict[str, str]] = json.loads((state_dir / "sandbox.json").read_text())
        state["age"] = {"identity": (state_dir / "age" / "identity.txt").read_text()}
        yield state
    finally:
        subprocess.run([BASCULE, "sandbox", "down", "--state-dir", str(state_dir)],
                       cwd=tmp_path, capture_output=True, timeout=60, check=True)  # fmt: skip


def test_real_sandbox_credentials_never_reach_the_log_file(
    sandbox: dict[str, dict[str, str]], log_dir: Path
) -> None:
    s3, azure = sandbox["s3"], sandbox["azure"]
    identity_line = next(
        line for line in sandbox["age"]["identity"].splitlines() if line.startswith("AGE-")
    )
    # As a configuration loader does for the environment values it reads.
    blog.register_secret(s3["access_key_id"])
    log = blog.get_logger("bascule.test", run="r-1")
    log.info("endpoint", endpoint_url=s3["endpoint_url"], conn=azure["connection_string"])
    log.info("nested", ctx={"dataset": "dcir-2023", "creds": [s3["secret_access_key"]]})
    log.warning(f"raw message with {azure['connection_string']} and {identity_line}")
    logging.getLogger("somelib").error("library says %s", s3["secret_access_key"])
    client = boto3.client(
        "s3",
        endpoint_url=s3["endpoint_url"],
        region_name=s3["region"],
        aws_access_key_id=s3["access_key_id"],
        aws_secret_access_key=s3["secret_access_key"] + "x",  # wrong: the call fails
        config=BotoConfig(request_checksum_calculation="when_required"),
    )
    with pytest.raises(ClientError) as refused:
        client.list_buckets()
    try:
        raise RuntimeError(f"failed with {s3['secret_access_key']} ({azure['connection_string']})")
    except RuntimeError:
        log.exception("copy failed", key="dcir/2023/x.parquet", error=refused.value)
    text = _log_text()
    events = [json.loads(line) for line in text.splitlines()]
    assert [e["event"] for e in events][:2] == ["endpoint", "nested"]
    for secret in (s3["access_key_id"], s3["secret_access_key"], AZURITE_KEY,
                   azure["connection_string"], identity_line):  # fmt: skip
        assert secret not in text
    assert identity_line.startswith("AGE-SECRET-KEY-1")
    # The context that is not secret is all there.
    assert s3["endpoint_url"] in text and "dcir-2023" in text and '"run": "r-1"' in text
    assert "dcir/2023/x.parquet" in text and "Traceback" in text and "library says" in text
    assert "SignatureDoesNotMatch" in text or "InvalidAccessKeyId" in text or "403" in text


def test_one_file_per_run_and_console_level(tmp_path: Path) -> None:
    blog.configure_logging(tmp_path / "a", console_level="critical")
    first = blog.current_log_file()
    blog.get_logger().debug("only in the file", n=1)
    blog.configure_logging(tmp_path / "b", console_level="critical", json=True)
    second = blog.current_log_file()
    blog.shutdown_logging()
    assert first is not None and second is not None and first != second
    assert json.loads(first.read_text())["event"] == "only in the file"
    assert first.name.startswith("bascule-") and first.suffix == ".jsonl"
    assert second.read_text() == ""
    assert blog.current_log_file() is None


def test_debug_lines_reach_the_file_only_at_file_level_debug(tmp_path: Path) -> None:
    """Per-object events are debug lines: dropped unless the file asks for debug."""
    blog.configure_logging(tmp_path / "a", console_level="critical", file_level="info")
    quiet = blog.current_log_file()
    blog.get_logger().debug("object.committed", key="k")
    blog.get_logger().info("copy.progress", objects=1)
    blog.configure_logging(tmp_path / "b", console_level="critical", file_level="debug")
    loud = blog.current_log_file()
    blog.get_logger().debug("object.committed", key="k")
    blog.shutdown_logging()
    assert quiet is not None and loud is not None
    assert [json.loads(x)["event"] for x in quiet.read_text().splitlines()] == ["copy.progress"]
    assert json.loads(loud.read_text())["event"] == "object.committed"

"""Through the real CLI: a config that would overwrite its own source is refused before anything
is written; `account_url` alone never reads anonymously (Azurite); no secret in an error line,
in a printed line, in a stored shell-output tail, and the journal is private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.age.stream import X25519Identity
from bascule.cli import common
from bascule.logging import redact_text
from bascule.migration.journal import Journal
from bascule.runbook.steps import _tail
from tests.integration.cloud import CloudSetup

BASCULE = [sys.executable, "-m", "bascule.cli.app"]
IDENTITY = X25519Identity.generate()


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BASCULE, *args, "-c", str(config)], capture_output=True, text=True, timeout=120,
        env=dict(os.environ),
    )  # fmt: skip


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _folder(tmp_path: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted((tmp_path / "data").rglob("*")):
        if path.is_file():
            files[str(path.relative_to(tmp_path))] = path.read_bytes()
    return files


@pytest.mark.parametrize(("source_prefix", "target_prefix"), [("", ""), ("", "enc/")])
def test_migrate_never_encrypts_its_own_source(
    tmp_path: Path, source_prefix: str, target_prefix: str
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_bytes(b"patient,visit\n1,2\n")
    config = tmp_path / "bascule.yaml"
    config.write_text(yaml.safe_dump({
        "project": "p", "journal": "state/journal.db",
        "endpoints": {"disk": {"kind": "local", "path": str(tmp_path / "data")}},
        "encryption": {"recipients": [str(IDENTITY.recipient())]},
        "datasets": [{"name": "ds", "source": {"endpoint": "disk", "prefix": source_prefix},
                      "target": {"endpoint": "disk", "prefix": target_prefix}}],
    }))  # fmt: skip
    before = _folder(tmp_path)
    proc = _cli(config, "migrate")
    assert proc.returncode == 2, proc.stderr
    assert "overlaps its source" in _one_line(proc)
    assert _folder(tmp_path) == before
    assert not (tmp_path / "state").exists()


@pytest.mark.servers
def test_account_url_alone_never_reads_anonymously(cloud: CloudSetup) -> None:
    """A public container answers anonymous requests: bascule must use the credential chain
    (none is available here) instead of reading without one."""
    cloud.blobs.get_container_client(cloud.container).set_container_access_policy(
        signed_identifiers={}, public_access="container"
    )
    cloud.upload("snds/a.csv", b"a\n1\n")
    data: dict[str, Any] = cloud.config_dict()
    data["endpoints"]["azure-fc"] = {"kind": "azure-blob", "account_url": cloud.azurite.account_url}
    proc = _cli(cloud.write_config(data), "migrate")
    line = _one_line(proc)
    assert proc.returncode == 3, proc.stderr
    assert "credential" in line and "endpoints.azure-fc" in line
    assert cloud.target_keys() == []


def test_cli_error_lines_are_redacted(tmp_path: Path) -> None:
    config = tmp_path / "bascule.yaml"
    config.write_text(yaml.safe_dump({
        "project": "p",
        "endpoints": {"s3": {"kind": "s3", "endpoint_url": "ftp://reader:Hunter2Secret@s3.example.eu"}},
        "datasets": [],
    }))  # fmt: skip
    proc = _cli(config, "plan")
    line = _one_line(proc)
    assert proc.returncode == 2 and "not an http(s) URL" in line
    assert "Hunter2Secret" not in proc.stderr + proc.stdout


def test_every_printed_line_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    secret = IDENTITY.to_secret_string()
    common.console.print(f"key {secret} in a listing")
    common.err_console.print(f"warning: {secret}")
    out = capsys.readouterr()
    assert secret[20:] not in out.out + out.err
    assert "AGE-SECRET-KEY-***" in out.out


@pytest.mark.parametrize("cut", [10, 30, 60])
def test_shell_output_is_redacted_before_it_is_cut(cut: int) -> None:
    secret = IDENTITY.to_secret_string()
    output = "noise " * 100 + secret + "z" * (400 - cut)
    tail = _tail(output)
    assert len(tail) <= 400
    assert secret[-cut:] not in tail, tail
    assert tail == redact_text(tail)


def test_journal_and_its_companions_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        journal = Journal(tmp_path / "state" / "journal.db", "fingerprint")
        journal.start_run("migrate")
        files = [
            tmp_path / "state" / name for name in ("journal.db", "journal.db-wal", "journal.db-shm")
        ]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        journal.close()
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(modes, 0o600)

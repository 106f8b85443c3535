"""`bascule keys generate|check`, run as a user runs it: the installed command, a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASCULE = str(Path(sys.executable).parent / "bascule")
AGE = "/usr/bin/age"


def bascule(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BASCULE_")}
    environment.update(env or {})
    return subprocess.run(
        [BASCULE, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60
    )


def secret_of(path: Path) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith("AGE-SECRET"))


def test_generate_writes_a_0600_file_and_prints_only_the_public_key(tmp_path: Path) -> None:
    done = bascule("keys", "generate", "--output", "id.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    path = tmp_path / "id.txt"
    assert path.stat().st_mode & 0o777 == 0o600
    recipient = done.stdout.strip()
    assert recipient.startswith("age1") and len(done.stdout.splitlines()) == 1
    secret = secret_of(path)
    assert secret not in done.stdout and secret not in done.stderr
    # the reference tool agrees on the key pair, and decrypts with the file
    assert (
        subprocess.run(
            ["/usr/bin/age-keygen", "-y", str(path)], capture_output=True, text=True, check=True
        ).stdout.strip()
        == recipient
    )
    sealed = subprocess.run(
        [AGE, "-e", "-r", recipient], input=b"hello", capture_output=True, check=True
    ).stdout
    opened = subprocess.run(
        [AGE, "-d", "-i", str(path)], input=sealed, capture_output=True, check=True
    ).stdout
    assert opened == b"hello"


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    assert bascule("keys", "generate", "-o", "id.txt", cwd=tmp_path).returncode == 0
    before = (tmp_path / "id.txt").read_bytes()
    done = bascule("keys", "generate", "-o", "id.txt", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: id.txt already exists; an identity is never overwritten: "
        "choose another --output or move the old file away"
    ]
    assert (tmp_path / "id.txt").read_bytes() == before


def test_generate_takes_the_path_from_the_environment(tmp_path: Path) -> None:
    done = bascule("keys", "generate", cwd=tmp_path, env={"BASCULE_AGE_IDENTITY": "env-id.txt"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env-id.txt").stat().st_mode & 0o777 == 0o600


def test_generate_without_a_path_is_a_usage_error(tmp_path: Path) -> None:
    done = bascule("keys", "generate", cwd=tmp_path)
    assert done.returncode == 2
    assert "--output" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_check_accepts_good_keys(tmp_path: Path) -> None:
    recipient = bascule("keys", "generate", "-o", "id.txt", cwd=tmp_path).stdout.strip()
    done = bascule("keys", "check", "-r", recipient, "-i", "id.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"ok  recipient 1: {recipient}",
        f"ok  identity file id.txt: public key {recipient}",
    ]
    assert secret_of(tmp_path / "id.txt") not in done.stdout


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("", ["-r", "age1notakey"], "recipient 2 ('age1notakey') is invalid"),
        ("", ["-i", "missing.txt"], "identity file missing.txt not found"),
        ("chmod", ["-i", "id.txt"], "run 'chmod 600 id.txt'"),
        ("garbage", ["-i", "id.txt"], "identity file id.txt, line 4:"),
    ],
)
def test_check_names_the_bad_key(tmp_path: Path, setup: str, args: list[str], message: str) -> None:
    recipient = bascule("keys", "generate", "-o", "id.txt", cwd=tmp_path).stdout.strip()
    path = tmp_path / "id.txt"
    if setup == "chmod":
        path.chmod(0o644)
    elif setup == "garbage":
        path.write_text(path.read_text() + "AGE-SECRET-KEY-1NOTAKEY\n")
    done = bascule("keys", "check", "-r", recipient, *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert "AGE-SECRET-KEY-1NOTAKEY" not in done.stderr


def test_check_never_echoes_a_secret_given_as_recipient(tmp_path: Path) -> None:
    bascule("keys", "generate", "-o", "id.txt", cwd=tmp_path)
    secret = secret_of(tmp_path / "id.txt")
    done = bascule("keys", "check", "-r", secret, cwd=tmp_path)
    assert done.returncode == 2
    assert "redacted" in done.stderr
    assert secret not in done.stderr + done.stdout


def test_check_with_nothing_to_check(tmp_path: Path) -> None:
    done = bascule("keys", "check", cwd=tmp_path)
    assert done.returncode == 2
    assert "nothing to check" in done.stderr

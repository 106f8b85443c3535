"""Acceptance of `bascule keys rotate` on real servers: Azurite as the source, moto's S3
(UploadPartCopy) or `rclone serve s3` (no UploadPartCopy: the rewrite fallback) as the
target; Debian's `age` CLI is the reader that decides."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from bascule.age.header import parse_header_bytes, unwrap_header
from bascule.age.sizes import header_length
from bascule.age.stream import X25519Identity, write_identity_file
from tests.faults.proxy import FaultPlan, FaultProxy
from tests.integration.cloud import ENV, CloudSetup, MiB, sha256

BASCULE = [sys.executable, "-m", "bascule.cli.app"]
MIN_PART = 5 * MiB
LARGE = {"snds/large/20mib.bin": 20 * MiB, "snds/large/11mib.bin": 11 * MiB + 777}
SMALL = {"snds/small/empty.csv": 0, "snds/small/a é.csv": 3000, "snds/small/b.csv": 70_000}


def _seed(cloud: CloudSetup) -> dict[str, bytes]:
    rng = random.Random(15)
    objects = {k: rng.randbytes(n) for k, n in {**LARGE, **SMALL}.items()}
    for key, data in objects.items():
        cloud.upload(key, data)
    return objects


def _target(key: str) -> str:
    return key.replace("snds/", "hdh/", 1)


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASCULE, *args], capture_output=True, text=True, timeout=timeout)


def _config(cloud: CloudSetup, endpoint: str | None = None, **changes: Any) -> Path:
    data = cloud.config_dict()
    if endpoint:
        data["endpoints"]["ovh-gra"]["endpoint_url"] = endpoint
    data["encryption"].update(changes)
    return cloud.write_config(data)


def _new_identity(cloud: CloudSetup, name: str) -> tuple[X25519Identity, Path]:
    identity = X25519Identity.generate()
    path = cloud.tmp_path / f"{name}.txt"
    write_identity_file(path, identity, "2026-01-01T00:00:00Z")
    return identity, path


def _migrated(cloud: CloudSetup) -> tuple[dict[str, bytes], Path]:
    objects = _seed(cloud)
    config = _config(cloud)
    done = _run("migrate", "-c", str(config))
    assert done.returncode == 0, done.stderr
    return objects, config


def _age(data: bytes, *identities: Path) -> subprocess.CompletedProcess[bytes]:
    args = [a for p in identities for a in ("-i", str(p))]
    return subprocess.run(["age", "-d", *args], input=data, capture_output=True)


def _check_rotated(cloud: CloudSetup, objects: dict[str, bytes], new_id: Path) -> None:
    """Every object opens with the new identity to the same plaintext, never with the old."""
    for key, data in objects.items():
        stored = cloud.target_bytes(_target(key))
        opened = _age(stored, new_id)
        assert opened.returncode == 0, (key, opened.stderr)
        assert sha256(opened.stdout) == sha256(data), key
        assert _age(stored, cloud.identity_file).returncode != 0, key
    assert cloud.s3_client.list_multipart_uploads(Bucket=cloud.bucket).get("Uploads", []) == []


def _after_rotation(cloud: CloudSetup, new: X25519Identity, new_id: Path) -> Path:
    """The operator's part: the config names the new recipient and identity."""
    cloud.monkeypatch.setenv(ENV["identity"], str(new_id))
    return _config(cloud, recipients=[str(new.recipient())])


def _rotate(config: Path, cloud: CloudSetup, new: X25519Identity, *extra: str) -> list[str]:
    """`keys rotate` from the setup's recipient (A) to `new` (B)."""
    old = str(cloud.identity.recipient())
    return ["keys", "rotate", "-c", str(config), "--add-recipient", str(new.recipient()),
            "--remove-recipient", old, *extra]  # fmt: skip


def _journal(cloud: CloudSetup) -> sqlite3.Connection:
    return sqlite3.connect(cloud.tmp_path / "state" / "journal.db")


def _sent_per_key(proxy: FaultProxy, key: str) -> int:
    """Request body bytes the client sent about `key` (parts, puts, the commit's XML)."""
    return sum(n for m, path, n in proxy.received if f"/{key}?" in path or path.endswith(key))


def _put_bytes(proxy: FaultProxy, key: str) -> int:
    """Object bytes the client sent for `key`: bodies of PUT requests (parts and puts)."""
    return sum(n for m, path, n in proxy.received if m == "PUT" and f"/{key}" in path)


def test_rotation_copies_server_side_on_moto(cloud_moto: CloudSetup) -> None:
    cloud = cloud_moto
    objects, _ = _migrated(cloud)
    new, new_id = _new_identity(cloud, "b")
    proxy = FaultProxy(cloud.s3.endpoint_url, FaultPlan(rate=0)).start()
    try:
        config = _config(cloud, endpoint=proxy.url)
        done = _run(*_rotate(config, cloud, new))
    finally:
        proxy.stop()
    assert done.returncode == 0, done.stderr
    assert "does not revoke" in done.stdout and "config is not changed" in done.stdout
    assert "rotated 5 object(s)" in done.stdout
    _check_rotated(cloud, objects, new_id)
    hlen = header_length(1)
    for key in LARGE:
        sent = _put_bytes(proxy, _target(key))
        total = _sent_per_key(proxy, _target(key))
        print(f"{key}: {sent} object bytes sent, {total} with the commit request")
        assert sent <= MIN_PART + hlen
    with _journal(cloud) as db:
        rows = db.execute(
            "SELECT target_key, path, bytes_sent, bytes_copied, old_recipients, new_recipients "
            "FROM rotations WHERE state='committed'"
        ).fetchall()
    by_key = {r[0]: r for r in rows}
    assert {by_key[_target(k)][1] for k in LARGE} == {"copy"}
    assert {by_key[_target(k)][1] for k in SMALL} == {"rewrite"}
    big = by_key[_target("snds/large/20mib.bin")]
    assert big[2] == MIN_PART and big[3] > 15 * MiB
    journal_text = (cloud.tmp_path / "state" / "journal.db").read_bytes()
    assert new.to_secret_string().encode() not in journal_text
    assert str(new.recipient()).encode() not in journal_text  # fingerprints only
    config = _after_rotation(cloud, new, new_id)
    for level in ("quick", "full"):
        check = _run("verify", "-c", str(config), "--level", level)
        assert check.returncode == 0, (level, check.stdout, check.stderr)
    again = _run("migrate", "-c", str(config))
    assert again.returncode == 0 and "nothing to copy" in again.stdout, again.stdout
    rerun = _run("keys", "rotate", "-c", str(config), "--add-recipient", str(new.recipient()))
    assert rerun.returncode == 0, rerun.stderr
    assert "rotated 0 object(s)" in rerun.stdout and "5 already rotated" in rerun.stdout


def test_rotation_falls_back_to_rewrite_without_upload_part_copy(cloud: CloudSetup) -> None:
    objects, config = _migrated(cloud)
    new, new_id = _new_identity(cloud, "b")
    dry = _run(*_rotate(config, cloud, new, "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    # `provider: other` declares UploadPartCopy: the dry run plans it, the server refuses it
    assert "would rotate 5 object(s)" in dry.stdout
    assert (
        _age(cloud.target_bytes(_target("snds/small/b.csv")), cloud.identity_file).returncode == 0
    )
    done = _run(*_rotate(config, cloud, new))
    assert done.returncode == 0, done.stderr
    assert "by copy" not in done.stdout and "by rewrite" in done.stdout
    assert "refused server-side copy" in done.stdout, done.stdout
    _check_rotated(cloud, objects, new_id)
    config = _after_rotation(cloud, new, new_id)
    check = _run("verify", "-c", str(config), "--level", "full")
    assert check.returncode == 0, (check.stdout, check.stderr)


def _is_copy_part(method: str, path: str) -> bool:
    return method == "PUT" and "partNumber=2&" in path + "&" and "20mib" in path


def _is_commit(method: str, path: str) -> bool:
    return method == "POST" and "uploadId=" in path and "20mib" in path


class _Readers:
    """Read and decrypt every object in a loop (both identities), counting failures."""

    def __init__(self, cloud: CloudSetup, keys: list[str], identities: list[Path]) -> None:
        self.cloud, self.keys, self.ids = cloud, keys, identities
        self.stop = threading.Event()
        self.reads = 0
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Readers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=120)

    def _loop(self) -> None:
        import boto3

        s3 = self.cloud.s3
        client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
                              aws_access_key_id=s3.access_key_id,
                              aws_secret_access_key=s3.secret_access_key)  # fmt: skip
        while not self.stop.is_set():
            for key in self.keys:
                body = client.get_object(Bucket=self.cloud.bucket, Key=key)["Body"].read()
                opened = _age(body, *self.ids)
                self.reads += 1
                if opened.returncode != 0:
                    self.failures.append(f"{key}: {opened.stderr!r}")


@pytest.mark.parametrize("phase", ["copy-part", "commit-landed"])
def test_sigkill_mid_rotation_then_rerun_completes(cloud_moto: CloudSetup, phase: str) -> None:
    cloud = cloud_moto
    objects, _ = _migrated(cloud)
    new, new_id = _new_identity(cloud, "b")
    hold = _is_copy_part if phase == "copy-part" else _is_commit
    plan = FaultPlan(rate=0, hold=hold, hold_after_forward=phase == "commit-landed")
    proxy = FaultProxy(cloud.s3.endpoint_url, plan).start()
    config = _config(cloud, endpoint=proxy.url)
    args = _rotate(config, cloud, new)
    keys = [_target(k) for k in objects]
    try:
        with _Readers(cloud, keys, [cloud.identity_file, new_id]) as readers:
            proc = subprocess.Popen([*BASCULE, *args], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            assert proxy.holding.wait(timeout=120), "the held request never came"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            proxy.release()
            done = _run(*args)
        assert done.returncode == 0, done.stderr
    finally:
        proxy.release()
        proxy.stop()
    assert readers.reads > 0 and readers.failures == []
    if phase == "commit-landed":
        assert "1 commit(s) finished" in done.stdout, done.stdout
    else:
        assert "1 interrupted rotation(s) done again" in done.stdout, done.stdout
    _check_rotated(cloud, objects, new_id)
    check = _run("verify", "-c", str(_after_rotation(cloud, new, new_id)), "--level", "full")
    assert check.returncode == 0, (check.stdout, check.stderr)


def _file_key(data: bytes, identity: X25519Identity) -> bytes:
    return unwrap_header(parse_header_bytes(data[: 64 * 1024]), [identity])


def test_rekey_gives_new_file_keys(cloud_moto: CloudSetup) -> None:
    cloud = cloud_moto
    objects, config = _migrated(cloud)
    before = {k: _file_key(cloud.target_bytes(_target(k)), cloud.identity) for k in objects}
    new, new_id = _new_identity(cloud, "b")
    done = _run(*_rotate(config, cloud, new, "--rekey"))
    assert done.returncode == 0, done.stderr
    assert "by rekey" in done.stdout and "does not revoke" not in done.stdout
    for key in objects:
        assert _file_key(cloud.target_bytes(_target(key)), new) != before[key]
    _check_rotated(cloud, objects, new_id)
    check = _run("verify", "-c", str(_after_rotation(cloud, new, new_id)), "--level", "full")
    assert check.returncode == 0, (check.stdout, check.stderr)


def _state(cloud: CloudSetup) -> tuple[str, list[tuple[str, str]]]:
    journal = hashlib.sha256((cloud.tmp_path / "state" / "journal.db").read_bytes()).hexdigest()
    listing = cloud.s3_client.list_objects_v2(Bucket=cloud.bucket).get("Contents", [])
    return journal, sorted((o["Key"], o["ETag"]) for o in listing)


def test_bad_input_is_one_line_exit_2_and_writes_nothing(cloud_moto: CloudSetup) -> None:
    cloud = cloud_moto
    _, config = _migrated(cloud)
    a = str(cloud.identity.recipient())
    b = str(_new_identity(cloud, "b")[0].recipient())
    plain = cloud.config_dict()
    plain["datasets"][0]["encrypt"] = False
    plain_config = cloud.tmp_path / "plain.yaml"
    plain_config.write_text(__import__("yaml").safe_dump(plain))
    before = _state(cloud)
    cases = {
        "unknown recipient": (["-c", str(config), "--add-recipient", "age1notakey"], {}),
        "missing identity": (["-c", str(config), "--add-recipient", b], {ENV["identity"]: ""}),
        "not encrypted": (["-c", str(plain_config), "--dataset", "snds", "--add-recipient", b], {}),
        "last recipient": (["-c", str(config), "--remove-recipient", a], {}),
    }  # fmt: skip
    import os

    for name, (args, env) in cases.items():
        environment = {**os.environ, **env}
        done = subprocess.run([*BASCULE, "keys", "rotate", *args], capture_output=True,
                              text=True, timeout=120, env=environment)  # fmt: skip
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, done.stderr)
        print(f"{name}: {lines[0]}")
        assert _state(cloud) == before, name

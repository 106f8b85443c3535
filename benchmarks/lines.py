"""The benchmark lines: bascule (plain, encrypted, on threads or Dask), rclone (plain, crypt)
and the raw bounds, each one child process on a fresh target bucket and a fresh journal.

Same concurrency everywhere: bascule runs `concurrency` parts at a time of `part_size`;
rclone gets `--transfers concurrency`, `--s3-chunk-size part_size`, and per object
`concurrency // objects` upload streams (`--s3-upload-concurrency`, `--multi-thread-streams`),
with multipart and multi-thread copies starting at one part size (`--s3-upload-cutoff`,
`--multi-thread-cutoff`), as bascule's do.

On HTTPS every line trusts the sandbox's CA file and nothing else: bascule through
`ca_bundle:` on both endpoints, rclone through `--ca-cert`, the raw lines' SDK clients
through `verify=`/`connection_verify=`. No line can skip certificate verification.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bascule.age.stream import X25519Identity
from bascule.connectors.rclone import rclone_binary
from bascule.sandbox import servers
from benchmarks.measure import ProcessFigures, idle_core_seconds, load_1min, run_measured
from benchmarks.sandbox import REGION, SOURCE_CONTAINER, DatasetShape, Sandbox

MiB = 1024 * 1024
GiB = 1024 * MiB
# A dataset whose objects average at least this is judged per GiB moved; below it, per
# 1,000 objects (its cost is per request, not per byte).
LARGE_OBJECT_BYTES = MiB
REPO_ROOT = Path(__file__).resolve().parents[1]
_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


@dataclass(frozen=True)
class Settings:
    concurrency: int
    part_size: int
    max_bytes_in_flight: int | None  # None: bascule's default
    defaults: bool = False  # True: no transfer section at all (bascule's defaults)
    profile: bool = False  # bascule lines under py-spy (slower: for where-time-goes only)


@dataclass(frozen=True)
class LineResult:
    transport: str  # "tls" (HTTPS, both servers) or "plain" (HTTP)
    dataset: str
    line: str
    bytes: int  # plaintext bytes of the dataset
    objects: int
    seconds: float  # the whole child process, start to exit
    engine_seconds: float | None  # bascule's run alone (after start-up and listing)
    peak_rss_bytes: int
    peak_tree_rss_bytes: int
    cpu_seconds: float
    server_cpu_seconds: float  # Azurite + rclone serve s3 during the line (same cores)
    azurite_cpu_seconds: float  # the source's share of it
    s3_server_cpu_seconds: float  # the target's share (rclone serve s3)
    stored_objects: int
    stored_bytes: int
    load_1min_before: float
    load_1min_after: float
    exit_code: int
    error: str = ""
    round: int = 1  # which round of `bench_copy --rounds` it ran in
    # Core-seconds the machine left idle during the line (all cores, the servers' included)
    idle_core_seconds: float | None = None

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def engine_mb_per_s(self) -> float | None:
        if not self.engine_seconds:
            return None
        return self.bytes / self.engine_seconds / 1e6

    @property
    def large(self) -> bool:
        """Judged per GiB moved (large objects) rather than per 1,000 objects."""
        return self.objects > 0 and self.bytes / self.objects >= LARGE_OBJECT_BYTES

    @property
    def cpu_per_gib(self) -> float:
        """CPU seconds of the measured process per GiB of plaintext moved."""
        return self.cpu_seconds / (self.bytes / GiB) if self.bytes else 0.0

    @property
    def cpu_per_1k_objects(self) -> float:
        """CPU seconds of the measured process per 1,000 objects moved."""
        return self.cpu_seconds / (self.objects / 1000) if self.objects else 0.0

    @property
    def cpu_per_unit(self) -> float:
        """The CPU figure the dataset is judged on: per GiB if large, per 1,000 objects if not."""
        return self.cpu_per_gib if self.large else self.cpu_per_1k_objects

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mb_per_s"] = round(self.mb_per_s, 2)
        engine = self.engine_mb_per_s
        data["engine_mb_per_s"] = None if engine is None else round(engine, 2)
        data["cpu_seconds_per_gib"] = round(self.cpu_per_gib, 3)
        data["cpu_seconds_per_1k_objects"] = round(self.cpu_per_1k_objects, 3)
        return data


class Lines:
    """Builds and runs each line against one sandbox."""

    def __init__(self, sandbox: Sandbox, settings: Settings) -> None:
        self.sandbox = sandbox
        self.settings = settings
        self.work = sandbox.root / "lines"
        self.work.mkdir(parents=True, exist_ok=True)
        self.rclone = rclone_binary()
        self.recipient = str(X25519Identity.generate().recipient())
        self.crypt_password = self._obscure(os.urandom(16).hex())
        self.results: list[LineResult] = []

    def _obscure(self, password: str) -> str:
        out = subprocess.run(
            [self.rclone, "obscure", "-"], input=password, capture_output=True, text=True,
            check=True, env=self._env({"RCLONE_CONFIG": "/dev/null"}),
        )  # fmt: skip
        return out.stdout.strip()

    @staticmethod
    def _env(extra: dict[str, str]) -> dict[str, str]:
        base = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        return {**base, **extra}

    def _bench_env(self) -> dict[str, str]:
        return self._env(
            {
                "BENCH_AZURE_CONNECTION_STRING": self.sandbox.azure_connection_string,
                "BENCH_S3_ENDPOINT": self.sandbox.s3.url,
                "BENCH_S3_ACCESS_KEY_ID": self.sandbox.s3_key_id,
                "BENCH_S3_SECRET_ACCESS_KEY": self.sandbox.s3_secret,
                "PYTHONPATH": str(REPO_ROOT),  # the benchmarks package is not installed
                **self._ca_env("BENCH_CA_BUNDLE"),
            }
        )

    def _ca_env(self, name: str) -> dict[str, str]:
        ca = self.sandbox.ca_file
        return {name: str(ca)} if ca else {}

    def _rclone_env(self, bucket: str) -> dict[str, str]:
        sb = self.sandbox
        return self._env(
            {
                "RCLONE_CONFIG": "/dev/null",
                "RCLONE_CONFIG_SRC_TYPE": "azureblob",
                "RCLONE_CONFIG_SRC_ACCOUNT": servers.AZURITE_ACCOUNT,
                "RCLONE_CONFIG_SRC_KEY": servers.AZURITE_KEY,
                "RCLONE_CONFIG_SRC_ENDPOINT": sb.azure_endpoint,
                "RCLONE_CONFIG_DST_TYPE": "s3",
                "RCLONE_CONFIG_DST_PROVIDER": "Rclone",
                "RCLONE_CONFIG_DST_ENDPOINT": sb.s3.url,
                "RCLONE_CONFIG_DST_REGION": REGION,
                "RCLONE_CONFIG_DST_ACCESS_KEY_ID": sb.s3_key_id,
                "RCLONE_CONFIG_DST_SECRET_ACCESS_KEY": sb.s3_secret,
                "RCLONE_CONFIG_CRYPT_TYPE": "crypt",
                "RCLONE_CONFIG_CRYPT_REMOTE": f"dst:{bucket}",
                "RCLONE_CONFIG_CRYPT_PASSWORD": self.crypt_password,
                # bascule keeps object names: compare the data path, not name encryption.
                "RCLONE_CONFIG_CRYPT_FILENAME_ENCRYPTION": "off",
                "RCLONE_CONFIG_CRYPT_DIRECTORY_NAME_ENCRYPTION": "false",
            }
        )

    def _bascule_config(
        self, shape: DatasetShape, bucket: str, encrypt: bool, dir_: Path, sha256: bool = False
    ) -> Path:
        s = self.settings
        transfer: dict[str, Any] = {"part_size": s.part_size, "concurrency": s.concurrency}
        if s.max_bytes_in_flight is not None:
            transfer["max_bytes_in_flight"] = s.max_bytes_in_flight
        data: dict[str, Any] = {
            "project": "bench",
            "journal": str(dir_ / "state" / "journal.db"),
            "endpoints": {
                "azure-src": {
                    "kind": "azure-blob",
                    "connection_string_env": "BENCH_AZURE_CONNECTION_STRING",
                },
                "s3-dst": {
                    "kind": "s3",
                    "provider": "other",
                    "region": REGION,
                    "endpoint_url": self.sandbox.s3.url,
                    "access_key_id_env": "BENCH_S3_ACCESS_KEY_ID",
                    "secret_access_key_env": "BENCH_S3_SECRET_ACCESS_KEY",
                },
            },
            "encryption": {"recipients": [self.recipient]},
            "datasets": [
                {
                    "name": "bench",
                    "source": {
                        "endpoint": "azure-src",
                        "container": SOURCE_CONTAINER,
                        "prefix": shape.prefix,
                    },
                    "target": {"endpoint": "s3-dst", "bucket": bucket, "prefix": ""},
                    "encrypt": encrypt,
                }
            ],
        }
        if sha256:
            data["endpoints"]["s3-dst"]["part_checksum"] = "sha256"
        if self.sandbox.ca_file:
            for endpoint in data["endpoints"].values():
                endpoint["ca_bundle"] = str(self.sandbox.ca_file)
        if not s.defaults:
            data["transfer"] = transfer
        path = dir_ / "bascule.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def _rclone_cmd(self, shape: DatasetShape, dest: str) -> list[str]:
        s = self.settings
        streams = max(1, s.concurrency // min(shape.count, s.concurrency))
        part = f"{s.part_size // 1024}Ki"
        return [
            self.rclone, "copy", f"src:{SOURCE_CONTAINER}/{shape.prefix}", dest,
            "--transfers", str(s.concurrency), "--checkers", str(s.concurrency),
            "--s3-chunk-size", part, "--s3-upload-cutoff", part,
            "--s3-upload-concurrency", str(streams),
            "--multi-thread-streams", str(streams), "--multi-thread-cutoff", part,
            *self._rclone_tls(),
            "-q",
        ]  # fmt: skip

    def _rclone_tls(self) -> list[str]:
        """rclone's global `--ca-cert`: its HTTP client (both remotes) trusts this CA only."""
        ca = self.sandbox.ca_file
        return ["--ca-cert", str(ca)] if ca else []

    def run(self, shape: DatasetShape, line: str, round_no: int = 1) -> LineResult:
        """Run one line on a fresh bucket and journal; the bucket is dropped afterwards."""
        named = f"r{round_no} {shape.name} {line}" if round_no != 1 else f"{shape.name} {line}"
        slug = re.sub(r"[^a-z0-9]+", "-", named.lower()).strip("-")
        dir_ = self.work / slug
        dir_.mkdir(parents=True, exist_ok=True)
        bucket = self.sandbox.fresh_bucket(slug[:60])
        cmd, env = self._command(shape, line, bucket, dir_)
        os.sync()  # start each line with no dirty pages left by the previous one
        load_before = load_1min()
        before = self.sandbox.server_cpu_by_server()
        idle_before = idle_core_seconds()
        figures = run_measured(cmd, env, dir_, dir_ / "stdout.txt")
        idle_after = idle_core_seconds()
        after = self.sandbox.server_cpu_by_server()
        server_cpu = (after[0] - before[0], after[1] - before[1])
        load_after = load_1min()
        stored = self.sandbox.bucket_usage(bucket)
        self.sandbox.drop_bucket(bucket)
        loads = (load_before, load_after)
        result = _result(self.sandbox.transport, shape, line, figures, server_cpu, stored, loads)
        idle = round(idle_after - idle_before, 2)
        result = dataclasses.replace(result, round=round_no, idle_core_seconds=idle)
        self.results.append(result)
        return result

    def _command(
        self, shape: DatasetShape, line: str, bucket: str, dir_: Path
    ) -> tuple[list[str], dict[str, str]]:
        s = self.settings
        py = [sys.executable, "-m"]
        if line.startswith("bascule"):
            encrypt = "encrypted" in line
            executor = line.split("[", 1)[1].rstrip("]") if "[" in line else "local"
            sha256 = "(sha256 parts)" in line
            config = self._bascule_config(shape, bucket, encrypt, dir_, sha256)
            cmd = [*py, "benchmarks.bascule_child", str(config), executor]
            return _profiled(cmd, dir_) if s.profile else cmd, self._bench_env()
        if line == "rclone plain":
            return self._rclone_cmd(shape, f"dst:{bucket}"), self._rclone_env(bucket)
        if line == "rclone crypt":
            return self._rclone_cmd(shape, "crypt:"), self._rclone_env(bucket)
        if line == "raw read":
            args = [shape.prefix, str(s.part_size), str(s.concurrency)]
            return [*py, "benchmarks.raw_child", "read", *args], self._bench_env()
        if line == "raw write":
            args = [bucket, str(shape.count), str(shape.size), str(s.part_size)]
            return [
                *py, "benchmarks.raw_child", "write", *args, str(s.concurrency)
            ], self._bench_env()  # fmt: skip
        raise ValueError(f"unknown line {line!r}")


def _profiled(cmd: list[str], dir_: Path) -> list[str]:
    """`cmd` under py-spy (installed by hand, not a project dependency): collapsed stacks,
    one file per line, idle threads excluded. With many threads, a thread waiting for the
    GIL is sampled in the call it waits to return from, which inflates system calls;
    BASCULE_BENCH_PY_SPY_GIL=1 samples only the thread holding the GIL (`--gil`), without
    pausing the process (`--nonblocking`): what Python itself costs."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = dir_ / "py-spy.txt"
    gil = ["--gil", "--nonblocking"] if os.environ.get("BASCULE_BENCH_PY_SPY_GIL") == "1" else []
    return [
        py_spy,
        "record",
        *gil,
        "--format",
        "raw",
        "--rate",
        "200",
        "--subprocesses",
        "-o",
        str(out),
        "--",
        *cmd,
    ]


def _engine_seconds(stdout: str) -> float | None:
    """The child's JSON line (py-spy, when used, writes its own lines after it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return float(json.loads(line)["engine_seconds"])
    return None


def _result(
    transport: str,
    shape: DatasetShape,
    line: str,
    figures: ProcessFigures,
    server_cpu: tuple[float, float],
    stored: tuple[int, int],
    loads: tuple[float, float],
) -> LineResult:
    engine: float | None = None
    error = ""
    if figures.exit_code != 0:
        error = (figures.stderr.strip().splitlines() or ["(no stderr)"])[-1][:300]
    elif line.startswith("bascule"):
        engine = _engine_seconds(figures.stdout)
    if not error and line != "raw read" and stored[0] != shape.count:
        error = f"target holds {stored[0]} objects, expected {shape.count}"
    return LineResult(
        transport=transport,
        dataset=shape.name,
        line=line,
        bytes=shape.total_bytes,
        objects=shape.count,
        seconds=figures.seconds,
        engine_seconds=engine,
        peak_rss_bytes=figures.peak_rss_bytes,
        peak_tree_rss_bytes=figures.peak_tree_rss_bytes,
        cpu_seconds=figures.cpu_seconds,
        server_cpu_seconds=round(sum(server_cpu), 2),
        azurite_cpu_seconds=round(server_cpu[0], 2),
        s3_server_cpu_seconds=round(server_cpu[1], 2),
        stored_objects=stored[0],
        stored_bytes=stored[1],
        load_1min_before=loads[0],
        load_1min_after=loads[1],
        exit_code=figures.exit_code,
        error=error,
    )

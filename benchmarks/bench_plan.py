"""Plan scaling: peak RSS and time of `bascule plan` against the object count.

Each line is one child process (`benchmarks.plan_child`) running `bascule plan` as the CLI
does, measured by `benchmarks.measure.run_measured` (peak RSS of that process from the
kernel, via GNU time):

- `synthetic N`: a generated, sorted listing of N objects (keys and sizes, no storage) as the
  source, every second one of them on the target, no journal yet; encrypted dataset.
- `local N`: N one-byte files in a local folder (created once under --workdir, 1,000 per
  directory) planned against an empty local target.

Usage:
    python -m benchmarks.bench_plan                           # synthetic 1M and 10M
    python -m benchmarks.bench_plan --objects 1000000 --local 1000000 --json plan.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from bascule.age.stream import X25519Identity
from benchmarks.measure import load_1min, run_measured

REPO_ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


@dataclass(frozen=True)
class PlanLine:
    line: str
    objects: int
    seconds: float
    cpu_seconds: float  # user + system: what "time linear" is judged on a loaded machine
    peak_rss_mib: float
    us_per_object: float  # CPU microseconds per object
    exit_code: int
    load_before: float
    load_after: float
    command: str


def _config(where: Path, src_name: str, dst_name: str) -> Path:
    for sub in ("src/c", "dst/b"):
        (where / sub).mkdir(parents=True, exist_ok=True)
    data = {
        "project": "bench-plan",
        "journal": str(where / "state" / "journal.db"),
        "endpoints": {
            src_name: {"kind": "local", "path": str(where / "src")},
            dst_name: {"kind": "local", "path": str(where / "dst")},
        },
        "encryption": {"recipients": [str(X25519Identity.generate().recipient())]},
        "datasets": [
            {"name": "ds", "source": {"endpoint": src_name, "container": "c", "prefix": "in/"},
             "target": {"endpoint": dst_name, "bucket": "b", "prefix": "out/"}}
        ],
    }  # fmt: skip
    path = where / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _seed_local(root: Path, objects: int) -> None:
    """N one-byte files, 1,000 per directory; kept across runs (a marker holds the count)."""
    marker = root / "seeded"
    if marker.exists() and marker.read_text() == str(objects):
        return
    base = root / "src" / "c" / "in"
    for i in range(objects):
        if i % 1000 == 0:
            (base / f"{i // 1000:06d}").mkdir(parents=True, exist_ok=True)
        (base / f"{i // 1000:06d}" / f"{i:010d}.csv").write_bytes(b"x")
    marker.write_text(str(objects))


def _measure(line: str, objects: int, cmd: list[str], where: Path) -> PlanLine:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    before = load_1min()
    fig = run_measured(cmd, env, REPO_ROOT, where / "plan.out")
    if fig.exit_code != 0:
        sys.stderr.write(fig.stderr[-2000:])
    return PlanLine(
        line=line,
        objects=objects,
        seconds=round(fig.seconds, 2),
        cpu_seconds=round(fig.cpu_seconds, 2),
        peak_rss_mib=round(fig.peak_rss_bytes / MiB, 1),
        us_per_object=round(fig.cpu_seconds * 1e6 / objects, 2),
        exit_code=fig.exit_code,
        load_before=round(before, 2),
        load_after=round(load_1min(), 2),
        command=" ".join(cmd),
    )


def synthetic_line(objects: int, workdir: Path, as_json: bool) -> PlanLine:
    where = workdir / f"synthetic-{objects}"
    config = _config(where, "synthetic-src", "synthetic-dst")
    cmd = [sys.executable, "-m", "benchmarks.plan_child", str(config), str(objects)]
    name = "synthetic --json" if as_json else "synthetic"
    return _measure(name, objects, [*cmd, "--json"] if as_json else cmd, where)


def local_line(objects: int, workdir: Path) -> PlanLine:
    where = workdir / f"local-{objects}"
    config = _config(where, "src", "dst")
    started = time.monotonic()
    _seed_local(where, objects)
    print(f"local folder of {objects} files ready ({time.monotonic() - started:.0f} s)")
    cmd = [sys.executable, "-m", "benchmarks.plan_child", str(config)]
    return _measure("local", objects, cmd, where)


def _table(lines: list[PlanLine]) -> str:
    out = ["| line | objects | seconds | CPU s | peak RSS MiB | CPU us/object | load before/after "
           "| exit |", "|---|---:|---:|---:|---:|---:|---|---:|"]  # fmt: skip
    for p in lines:
        out.append(
            f"| {p.line} | {p.objects:,} | {p.seconds} | {p.cpu_seconds} | {p.peak_rss_mib} | "
            f"{p.us_per_object} | {p.load_before}/{p.load_after} | {p.exit_code} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="1000000,10000000", help="synthetic line sizes")
    parser.add_argument("--local", type=int, default=0, help="a local-folder line of N files")
    parser.add_argument("--plan-json", action="store_true", help="also time `plan --json`")
    parser.add_argument("--workdir", type=Path, default=None, help="keep configs and outputs")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-plan-"))
    lines: list[PlanLine] = []
    for n in (int(x) for x in args.objects.split(",") if x):
        lines.append(synthetic_line(n, workdir, as_json=False))
        print(_table(lines[-1:]), flush=True)
        if args.plan_json:
            lines.append(synthetic_line(n, workdir, as_json=True))
    if args.local:
        lines.append(local_line(args.local, workdir))
    print(_table(lines))
    if args.json:
        machine = {"cpus": os.cpu_count(), "load_1_5_15": os.getloadavg()}
        args.json.write_text(
            json.dumps({"lines": [asdict(p) for p in lines], "machine": machine}, indent=2)
        )
    return 0 if all(p.exit_code == 0 for p in lines) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Side-by-side copy benchmark: bascule against rclone, on local Azurite and `rclone serve s3`.

    python -m benchmarks.bench_copy [--quick] [--json FILE]      throughput lines
    python -m benchmarks.bench_copy --memory [--json FILE]       peak RSS, one 2 GiB object

Not part of the test suite: figures depend on the machine and its load (recorded per line).
MB/s are decimal (10^6 bytes) of plaintext per second of the whole child process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.lines import LineResult, Lines, Settings
from benchmarks.sandbox import DatasetShape, KiB, MiB, running_sandbox, seed_source

GiB = 1024 * MiB
FULL = [
    DatasetShape("large", "large/", 4, 256 * MiB),
    DatasetShape("small", "small/", 2000, 32 * KiB),
]
QUICK = [
    DatasetShape("large", "large/", 4, 64 * MiB),
    DatasetShape("small", "small/", 500, 32 * KiB),
]
MEMORY = [DatasetShape("huge", "huge/", 1, 2 * GiB)]
# raw read first: it warms the source's page cache for every line after it.
LINES = [
    "raw read",
    "raw write",
    "bascule plain",
    "rclone plain",
    "bascule encrypted",
    "rclone crypt",
    "bascule encrypted [dask-local:2]",
]
MEMORY_LINES = ["bascule encrypted", "rclone crypt"]
RATIOS = [
    ("bascule plain / rclone plain", "bascule plain", "rclone plain"),
    ("bascule encrypted / rclone crypt", "bascule encrypted", "rclone crypt"),
    ("dask-local:2 / local (encrypted)", "bascule encrypted [dask-local:2]", "bascule encrypted"),
    ("bascule plain / raw read", "bascule plain", "raw read"),
    ("bascule plain / raw write", "bascule plain", "raw write"),
]


def _mib(n: int) -> str:
    return f"{n / MiB:.0f}"


def _row(r: LineResult) -> str:
    engine = r.engine_mb_per_s
    engine_s = f"{engine:8.1f}" if engine is not None else f"{'-':>8}"
    status = "ok" if not r.error else f"FAILED: {r.error}"
    return (
        f"{r.dataset:<6} {r.line:<34} {r.mb_per_s:8.1f} {engine_s} {r.seconds:8.2f} "
        f"{_mib(r.peak_rss_bytes):>7} {_mib(r.peak_tree_rss_bytes):>7} {r.cpu_seconds:6.1f} "
        f"{r.load_1min_before:5.1f} {status}"
    )


def ratios(results: list[LineResult]) -> list[dict[str, Any]]:
    """bascule / other, per dataset, on whole-process MB/s (and on engine MB/s for Dask)."""
    out: list[dict[str, Any]] = []
    by_key = {(r.dataset, r.line): r for r in results if not r.error}
    for dataset in dict.fromkeys(r.dataset for r in results):
        for name, top, bottom in RATIOS:
            a, b = by_key.get((dataset, top)), by_key.get((dataset, bottom))
            if a is None or b is None:
                continue
            item: dict[str, Any] = {"dataset": dataset, "ratio": name}
            item["wall"] = round(a.mb_per_s / b.mb_per_s, 3)
            ea, eb = a.engine_mb_per_s, b.engine_mb_per_s
            item["engine"] = round(ea / eb, 3) if ea and eb else None
            out.append(item)
    return out


def print_report(results: list[LineResult]) -> None:
    print(
        f"{'data':<6} {'line':<34} {'MB/s':>8} {'eng MB/s':>8} {'seconds':>8} "
        f"{'RSS MiB':>7} {'tree':>7} {'CPU s':>6} {'load':>5} status"
    )
    for r in results:
        print(_row(r))
    print()
    for item in ratios(results):
        engine = f" (engine {item['engine']:.2f})" if item["engine"] else ""
        print(f"{item['dataset']:<6} {item['ratio']:<34} {item['wall']:.2f}{engine}")


def _meta(
    args: argparse.Namespace, shapes: list[DatasetShape], settings: Settings
) -> dict[str, Any]:
    return {
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.bench_copy", *sys.argv[1:]]
        ),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "memory" if args.memory else "quick" if args.quick else "full",
        "datasets": [{"name": s.name, "objects": s.count, "size": s.size} for s in shapes],
        "concurrency": settings.concurrency,
        "part_size": settings.part_size,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "source": _source_state(),
    }


def _source_state() -> str:
    """The commit measured, and whether the working tree differed from it."""
    repo = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "bascule"], capture_output=True)
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_copy", description=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="4 x 64 MiB and 500 x 32 KiB")
    mode.add_argument(
        "--memory", action="store_true", help="peak RSS of one 2 GiB object, default settings"
    )
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--concurrency", type=int, default=8, help="parts/transfers at a time")
    p.add_argument("--part-size-mib", type=int, default=16, help="bascule part, rclone chunk")
    p.add_argument("--lines", help="comma-separated subset of: " + ", ".join(LINES))
    p.add_argument(
        "--py-spy", action="store_true", help="profile bascule lines (py-spy must be installed)"
    )
    p.add_argument("--workdir", type=Path, help="keep servers' data here (default: a temp dir)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    shapes = MEMORY if args.memory else QUICK if args.quick else FULL
    lines = MEMORY_LINES if args.memory else LINES
    if args.lines:
        lines = [line.strip() for line in args.lines.split(",")]
    settings = Settings(
        args.concurrency,
        args.part_size_mib * MiB,
        None,
        defaults=bool(args.memory),
        profile=bool(args.py_spy),
    )
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bascule-bench-"))
    meta = _meta(args, shapes, settings)
    results: list[LineResult] = []
    try:
        with running_sandbox(root) as sandbox:
            started = time.monotonic()
            seed_source(sandbox, shapes)
            meta["seed_seconds"] = round(time.monotonic() - started, 1)
            bench = Lines(sandbox, settings)
            for shape in shapes:
                for line in lines:
                    result = bench.run(shape, line)
                    results.append(result)
                    print(_row(result), flush=True)
            print()
            print_report(results)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        report = {
            "meta": meta,
            "lines": [r.to_dict() for r in results],
            "ratios": ratios(results),
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

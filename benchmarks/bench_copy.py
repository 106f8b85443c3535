"""Side-by-side copy benchmark: bascule against rclone, on local Azurite and `rclone serve s3`.

    python -m benchmarks.bench_copy [--quick] [--transport tls|plain|both] [--json FILE]
                                    [--markdown FILE]                throughput lines
    python -m benchmarks.bench_copy --memory [--json FILE]           peak RSS, one 2 GiB object
    python -m benchmarks.bench_copy --startup --rounds 10            start-up, one 32 KiB object

By default every line runs twice: first with both servers on HTTPS (a local CA that every
client trusts, as production endpoints are reached), then on plain HTTP, one sandbox each.
Not part of the test suite: figures depend on the machine and its load (recorded per line).
MB/s are decimal (10^6 bytes) of plaintext per second of the whole child process; CPU is
also given per GiB moved (large objects) or per 1,000 objects (small ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.copy_report import markdown_report, ratio_summary, ratios, text_report
from benchmarks.lines import REPO_ROOT, LineResult, Lines, Settings
from benchmarks.measure import cpu_model, python_build
from benchmarks.sandbox import TRANSPORTS, DatasetShape, KiB, MiB, running_sandbox, seed_source

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
# One small object: the whole line is start-up (interpreter, imports, config, listing,
# planning) and one request each way; bascule's against rclone's.
STARTUP = [DatasetShape("one", "one/", 1, 32 * KiB)]
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
# Not run unless asked for: parts carry x-amz-checksum-sha256 (the journal's digest, as on
# Scaleway and AWS) instead of Content-MD5. `rclone serve s3` stores that checksum without
# checking it, so the servers' CPU is not what a provider spends: compare the client's.
SHA256_LINES = ["bascule plain (sha256 parts)", "bascule encrypted (sha256 parts)"]
KNOWN_LINES = [*LINES, *SHA256_LINES]
MEMORY_LINES = ["bascule encrypted", "rclone crypt"]


def _row(r: LineResult) -> str:
    """One progress line, printed as each line finishes."""
    engine = r.engine_mb_per_s
    engine_s = f"{engine:8.1f}" if engine is not None else f"{'-':>8}"
    status = "ok" if not r.error else f"FAILED: {r.error}"
    return (
        f"{r.round:>2} {r.transport:<5} {r.dataset:<6} {r.line:<34} {r.mb_per_s:8.1f} {engine_s} "
        f"{r.seconds:8.2f} {r.cpu_seconds:6.1f} {r.cpu_per_unit:7.2f} "
        f"{r.load_1min_before:5.1f} {r.load_1min_after:5.1f} {status}"
    )


PROGRESS_HEADER = (
    f"{'r':>2} {'tport':<5} {'data':<6} {'line':<34} {'MB/s':>8} {'eng MB/s':>8} {'seconds':>8} "
    f"{'CPU s':>6} {'CPU/u':>7} {'load':>5} {'after':>5} status"
)


def _command_line() -> str:
    """The command as typed, the interpreter relative to the repository when it lives there."""
    python = Path(sys.executable)
    if python.is_relative_to(REPO_ROOT):
        python = python.relative_to(REPO_ROOT)
    return shlex.join([str(python), "-m", "benchmarks.bench_copy", *sys.argv[1:]])


def _meta(
    args: argparse.Namespace, shapes: list[DatasetShape], settings: Settings
) -> dict[str, Any]:
    return {
        "command": _command_line(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "memory" if args.memory else "quick" if args.quick else "full",
        "transports": _transports(args.transport),
        "datasets": [{"name": s.name, "objects": s.count, "size": s.size} for s in shapes],
        "concurrency": settings.concurrency,
        "rounds": args.rounds,
        "warm_up": not args.no_warm_up,
        "part_size": settings.part_size,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_build": python_build(),
        "source": _source_state(),
        "seed_seconds": {},
    }


def _source_state() -> str:
    """The commit measured, and whether the working tree of `bascule/` differed from it."""
    git = ["git", "-C", str(REPO_ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "bascule"], capture_output=True)
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def _transports(choice: str) -> list[str]:
    return list(TRANSPORTS) if choice == "both" else [choice]


def _lines(args: argparse.Namespace, p: argparse.ArgumentParser) -> list[str]:
    if not args.lines:
        return MEMORY_LINES if args.memory else LINES
    chosen = [line.strip() for line in args.lines.split(",")]
    unknown = [line for line in chosen if line not in KNOWN_LINES]
    if unknown:
        known = ", ".join(KNOWN_LINES)
        p.error(f"--lines: unknown line(s) {', '.join(map(repr, unknown))}; choose from {known}")
    return chosen


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_copy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="4 x 64 MiB and 500 x 32 KiB")
    mode.add_argument(
        "--memory", action="store_true", help="peak RSS of one 2 GiB object, default settings"
    )
    mode.add_argument(
        "--startup",
        action="store_true",
        help="one 32 KiB object: what a run costs before and after its copy (use --rounds)",
    )
    p.add_argument(
        "--transport",
        choices=[*TRANSPORTS, "both"],
        default="both",
        help="tls: both servers on HTTPS with a local CA every line trusts; plain: HTTP; "
        "both (default): tls, then plain, one sandbox each",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write every figure to this file")
    p.add_argument(
        "--markdown",
        type=Path,
        metavar="FILE",
        help="write the summary tables as GitHub markdown, with the command, commit and cores",
    )
    p.add_argument(
        "--concurrency", type=int, default=8, metavar="N", help="parts/transfers at a time"
    )
    p.add_argument(
        "--part-size-mib", type=int, default=16, metavar="N", help="bascule part, rclone chunk"
    )
    p.add_argument(
        "--lines",
        help="comma-separated subset of: " + ", ".join(KNOWN_LINES) + " (the last two only "
        "when named: bascule with SHA-256 part checksums, as on Scaleway and AWS)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="run every line N times, the order of the lines reversed every other round; "
        "ratios pair lines of the same round and are given as the median over the rounds",
    )
    p.add_argument(
        "--datasets",
        choices=["large", "small", "both"],
        default="both",
        help="the throughput datasets to run (default both); small alone gives the noisy "
        "per-object lines more rounds in the same time",
    )
    p.add_argument(
        "--no-warm-up",
        action="store_true",
        help="measure from the first line (by default the first line runs once, unmeasured, "
        "on each sandbox: the servers' first writes cost them up to half as much CPU again)",
    )
    p.add_argument(
        "--py-spy", action="store_true", help="profile bascule lines (py-spy must be installed)"
    )
    p.add_argument(
        "--workdir", type=Path, metavar="DIR", help="keep servers' data here (default: a temp dir)"
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds: {args.rounds} is not a number of rounds; give 1 or more")
    if args.datasets != "both" and (args.memory or args.startup):
        p.error("--datasets picks among the throughput datasets; leave it out with --memory "
                "or --startup")  # fmt: skip
    args.line_names = _lines(args, p)
    return args


def run_transport(
    root: Path,
    transport: str,
    shapes: list[DatasetShape],
    lines: list[str],
    settings: Settings,
    rounds: int = 1,
    warm_up: bool = True,
) -> tuple[list[LineResult], float]:
    """Every line on every dataset over one transport, `rounds` times (odd rounds in the
    order given, even ones reversed), in its own sandbox under `root` (stopped, by pid,
    before this returns). Returns the results and the seeding seconds."""
    results: list[LineResult] = []
    with running_sandbox(root, transport) as sandbox:
        started = time.monotonic()
        seed_source(sandbox, shapes)
        seed_seconds = round(time.monotonic() - started, 1)
        bench = Lines(sandbox, settings)
        if warm_up:
            first = bench.run(shapes[0], lines[0], round_no=0)
            print(_row(first) + "  (warm-up, not counted)", flush=True)
        for round_no in range(1, rounds + 1):
            order = lines if round_no % 2 else lines[::-1]
            for shape in shapes:
                for line in order:
                    result = bench.run(shape, line, round_no)
                    results.append(result)
                    print(_row(result), flush=True)
    return results, seed_seconds


def _write_outputs(
    args: argparse.Namespace, meta: dict[str, Any], results: list[LineResult]
) -> None:
    if args.json:
        report = {
            "meta": meta,
            "lines": [r.to_dict() for r in results],
            "ratios": ratios(results),
            "ratio_summary": ratio_summary(ratios(results)),
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown_report(meta, results))


def dataset_shapes(args: argparse.Namespace) -> list[DatasetShape]:
    """The datasets the options name (`--datasets` narrows the throughput ones)."""
    shapes = MEMORY if args.memory else STARTUP if args.startup else QUICK if args.quick else FULL
    return [s for s in shapes if args.datasets in ("both", s.name)]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    shapes = dataset_shapes(args)
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
    print(PROGRESS_HEADER, flush=True)
    try:
        for transport in meta["transports"]:
            done, seed_seconds = run_transport(
                root / transport, transport, shapes, args.line_names, settings,
                rounds=args.rounds, warm_up=not args.no_warm_up,
            )  # fmt: skip
            results += done
            meta["seed_seconds"][transport] = seed_seconds
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(text_report(results), end="")
    _write_outputs(args, meta, results)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

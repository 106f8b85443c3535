"""Per-object overhead: many tiny objects, local disk to local disk, encrypted, side by side.

    python -m benchmarks.bench_tiny [--objects 20000] [--size 11] [--transfers 8] [--json FILE]
                                    [--executors auto,local,processes:N] [--rounds 3]
                                    [--workdir DIR]
    python -m benchmarks.bench_tiny --profile      # bascule under cProfile, top entries printed
    python -m benchmarks.bench_tiny --py-spy DIR   # bascule under py-spy (every thread)

bascule migrates a `local` endpoint to a `local` endpoint with age encryption; rclone copies
the same folder into a crypt remote over a local folder (names not encrypted: bascule keeps
names). Both get the same number of transfers (`concurrency`, `--transfers`/`--checkers`).
Neither side touches the network: this line measures what each tool spends per object.
The tools take turns for `--rounds` rounds, each into a target of its own, in the reverse
order every other round; the ratio quoted is the median of the rounds' ratios. Before each
line the work folder's file system is flushed (syncfs), untimed, so that no tool pays for the
writeback of the line before it; `durable_seconds` adds the flush after the line: the time
until what the tool wrote is on disk (bascule flushes before it journals; rclone does not).

Not part of the test suite: figures depend on the machine and its load (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bascule.age.stream import X25519Identity
from bascule.connectors.fileio import syncfs
from bascule.connectors.rclone import rclone_binary
from benchmarks.lines import _profiled
from benchmarks.measure import ProcessFigures, cpu_model, load_1min, python_build, run_measured

REPO_ROOT = Path(__file__).resolve().parents[1]
_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def _env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
    return {**base, **extra}


def seed(root: Path, count: int, size: int) -> None:
    """`count` files of `size` bytes in 100 sub-folders (a flat folder of 20,000 is unusual)."""
    for i in range(count):
        sub = root / f"d{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"o{i:06d}.txt").write_bytes(f"{i:0{size}d}".encode()[:size])


def bascule_config(work: Path, source: Path, target: Path, transfers: int) -> Path:
    data: dict[str, Any] = {
        "project": "bench-tiny",
        "journal": str(work / "state" / "journal.db"),
        "endpoints": {
            "src": {"kind": "local", "path": str(source.parent)},
            "dst": {"kind": "local", "path": str(target.parent)},
        },
        "encryption": {"recipients": [str(X25519Identity.generate().recipient())]},
        "transfer": {"concurrency": transfers},
        "datasets": [
            {
                "name": "tiny",
                "source": {"endpoint": "src", "container": source.name, "prefix": ""},
                "target": {"endpoint": "dst", "container": target.name, "prefix": ""},
                "encrypt": True,
            }
        ],
    }
    path = work / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rclone_line(work: Path, source: Path, target: Path, transfers: int) -> ProcessFigures:
    rclone = rclone_binary()
    password = subprocess.run(
        [rclone, "obscure", "-"], input=os.urandom(16).hex(), capture_output=True, text=True,
        check=True, env=_env({"RCLONE_CONFIG": "/dev/null"}),
    ).stdout.strip()  # fmt: skip
    env = _env(
        {
            "RCLONE_CONFIG": "/dev/null",
            "RCLONE_CONFIG_CRYPT_TYPE": "crypt",
            "RCLONE_CONFIG_CRYPT_REMOTE": str(target),
            "RCLONE_CONFIG_CRYPT_PASSWORD": password,
            "RCLONE_CONFIG_CRYPT_FILENAME_ENCRYPTION": "off",
            "RCLONE_CONFIG_CRYPT_DIRECTORY_NAME_ENCRYPTION": "false",
        }
    )
    cmd = [rclone, "copy", str(source), "crypt:", "--transfers", str(transfers),
           "--checkers", str(transfers), "-q"]  # fmt: skip
    return run_measured(cmd, env, work, work / "rclone.stdout")


def bascule_line(
    work: Path, config: Path, executor: str, profile: Path | None, spy: Path | None
) -> ProcessFigures:
    cmd = [sys.executable, "-m", "benchmarks.bascule_child", str(config), executor]
    if spy is not None:
        spy.mkdir(parents=True, exist_ok=True)
        cmd = _profiled(cmd, spy)
    env = _env({"PYTHONPATH": str(REPO_ROOT)})
    if profile is not None:  # the coordinator's process (a `processes:N` worker is another)
        env["BASCULE_BENCH_CPROFILE"] = str(profile)
    return run_measured(cmd, env, work, work / "bascule.stdout")


def _count(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and ".bascule-" not in str(p))


def _split(stdout: str) -> dict[str, Any]:
    """bascule's CPU split between its coordinator and its worker processes, as
    `bascule_child` prints it (nothing for rclone)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            child = json.loads(line)
            keys = ("coordinator_cpu_seconds", "workers_cpu_seconds", "engine_seconds")
            return {k: round(child[k], 2) for k in keys if k in child}
    return {}


def _figures(name: str, f: ProcessFigures, stored: int, load: tuple[float, ...]) -> dict[str, Any]:
    return {
        "line": name,
        "seconds": round(f.seconds, 2),
        "cpu_seconds": round(f.cpu_seconds, 2),
        **_split(f.stdout),
        "peak_rss_mib": round(f.peak_rss_bytes / 2**20, 1),
        "stored_objects": stored,
        "exit_code": f.exit_code,
        "load_before": load,
        "error": "" if f.exit_code == 0 else (f.stderr.strip().splitlines() or [""])[-1][:300],
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    source = root / "src" / "data"
    source.mkdir(parents=True)
    seed(source, args.objects, args.size)
    lines = []
    names = [f"bascule encrypted [{e}]" for e in args.executors.split(",")] + ["rclone crypt"]
    for round_ in range(1, args.rounds + 1):
        # The order reversed every other round: a disk that slows down or recovers over
        # the run (ext4 after many files were freed) weighs on both tools alike.
        for name in names if round_ % 2 else names[::-1]:
            lines.append(_line(args, root, source, name, round_))
            print(json.dumps(lines[-1]), flush=True)
    return {
        "objects": args.objects,
        "size": args.size,
        "transfers": args.transfers,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python_build": python_build(),
        "load_after": os.getloadavg(),
        "load_1min_end": load_1min(),
        "lines": lines,
        "bascule_over_rclone_seconds": _ratios(lines, names[:-1], "seconds"),
        "bascule_over_rclone_cpu": _ratios(lines, names[:-1], "cpu_seconds"),
        "bascule_over_rclone_durable": _ratios(lines, names[:-1], "durable_seconds"),
    }


def _line(
    args: argparse.Namespace, root: Path, source: Path, name: str, round_: int
) -> dict[str, Any]:
    """One tool's copy of `source` into a target of its own (nothing is deleted before the
    last round: on some disks, freeing 20,000 files slows the next writer for seconds)."""
    work = root / f"r{round_}" / re.sub(r"[^a-z0-9]+", "-", name)
    target = work / "dst" / "data"
    target.mkdir(parents=True)
    _flush_disk(root)  # the last line's writes written back: no tool pays for another's
    load = os.getloadavg()
    if name == "rclone crypt":
        figures = rclone_line(work, source, target, args.transfers)
    else:
        config = bascule_config(work, source, target, args.transfers)
        prof = work / "bascule.prof" if args.profile else None
        executor = name.split("[", 1)[1].rstrip("]")
        figures = bascule_line(work, config, executor, prof, args.py_spy)
        if prof is not None and prof.exists():
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(args.top)
    durable = figures.seconds + _flush_disk(root)
    line = _figures(name, figures, _count(target), load)
    return {**line, "durable_seconds": round(durable, 2), "round": round_}


def _flush_disk(root: Path) -> float:
    """syncfs(2) on the file system holding `root`; the seconds it took. bascule flushes
    what it wrote before its journal holds it (its crash contract); rclone's local backend
    leaves it to the kernel, whose writeback, untimed, would otherwise land in the next line."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        started = time.perf_counter()
        syncfs(fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def _ratios(lines: list[dict[str, Any]], names: list[str], figure: str) -> dict[str, Any]:
    """Per bascule line: its figure over rclone's of the same round, each round's ratio and
    their median (rounds alternate the tools, so a drift of the machine hits both)."""
    peer = {line["round"]: line[figure] for line in lines if line["line"] == "rclone crypt"}
    out: dict[str, Any] = {}
    for name in names:
        each = [round(line[figure] / peer[line["round"]], 2) for line in lines
                if line["line"] == name and peer.get(line["round"])]  # fmt: skip
        out[name] = {"median": statistics.median(each) if each else None, "rounds": each}
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_tiny", description=__doc__)
    p.add_argument("--objects", type=int, default=20000)
    p.add_argument("--size", type=int, default=11, help="bytes per object")
    p.add_argument("--transfers", type=int, default=8, help="bascule concurrency, rclone transfers")
    p.add_argument(
        "--executors",
        default="auto,local",
        help="bascule lines, one per --executor (comma-separated; auto, the CLI's default, "
        "is processes:<cores> here)",
    )
    p.add_argument("--profile", action="store_true", help="run bascule under cProfile")
    p.add_argument("--py-spy", type=Path, help="run bascule under py-spy, write DIR/py-spy.txt")
    p.add_argument(
        "--rounds", type=int, default=3, help="each tool's runs, alternating (the median ratio)"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="where the trees go (default: the temporary folder); /dev/shm measures the tools "
        "without the disk, whose state after earlier runs can slow every writer for seconds",
    )
    p.add_argument("--top", type=int, default=25, help="profile entries printed")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.workdir is not None and not args.workdir.is_dir():
        p.error(f"--workdir {args.workdir}: no such folder; create it, or leave the option out")
    root = Path(tempfile.mkdtemp(prefix="bascule-tiny-", dir=args.workdir))
    try:
        report = run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for figure in ("seconds", "cpu", "durable"):
        for line, ratio in report[f"bascule_over_rclone_{figure}"].items():
            each = ", ".join(str(r) for r in ratio["rounds"])
            print(f"{line} / rclone crypt ({figure}): median {ratio['median']} (rounds: {each})")
    print(f"machine: {report['cpus']} cores, {report['cpu_model']}; {report['python_build']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(line["error"] for line in report["lines"]) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

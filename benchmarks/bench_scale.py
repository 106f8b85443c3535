"""Production scale on real disks: migrate N tiny objects local to local, encrypted, killed
(SIGKILL) at a random point and resumed, then verify, status and report on that journal.

    python -m benchmarks.bench_scale [--objects 1000000] [--executor processes:N]
                                     [--seed 1] [--workdir DIR] [--json FILE]

The source is N files of 11 bytes, 1,000 per folder, made once under `--workdir` (kept for
the next run: making a million files takes minutes). Each run starts from an empty target and
no journal. The kill comes when the journal holds a committed count drawn at random (seeded)
between 10 % and 90 % of N; the second `migrate` must finish (exit 0), then `verify --level
quick` must find nothing (exit 0); `status` and `report --html` read that journal; then
3 source files change and 3 appear, and a last `migrate` (the final delta) must copy those 6
and no other. Figures per step: wall and CPU seconds, peak RSS of the
process and of its tree (worker processes included), and at the end the journal's bytes per
object, how many objects the kill made the resume send again (copied in the killed run but
not yet durable in its journal), and the target's object count. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bascule.age.stream import X25519Identity
from benchmarks.measure import ProcessFigures, load_1min, run_measured

REPO_ROOT = Path(__file__).resolve().parents[1]
PER_FOLDER = 1000
DRIFT = 3  # objects changed, and objects added, before the final delta


def seed(source: Path, count: int) -> float:
    """`count` files of 11 bytes (made only if the folder does not hold them yet); seconds."""
    marker = source / f".seeded-{count}"
    if marker.exists():
        return 0.0
    started = time.monotonic()
    shutil.rmtree(source, ignore_errors=True)
    for folder in range(-(-count // PER_FOLDER)):
        path = source / f"f{folder:05d}"
        path.mkdir(parents=True)
        for i in range(folder * PER_FOLDER, min(count, (folder + 1) * PER_FOLDER)):
            fd = os.open(path / f"o{i:07d}.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, f"{i:011d}".encode())
            os.close(fd)
    marker.touch()
    return time.monotonic() - started


def write_config(work: Path, source: Path, concurrency: int) -> Path:
    data: dict[str, Any] = {
        "project": "bench-scale",
        "journal": str(work / "state" / "journal.db"),
        "endpoints": {
            "src": {"kind": "local", "path": str(source.parent)},
            "dst": {"kind": "local", "path": str(work / "dst")},
        },
        "encryption": {"recipients": [str(X25519Identity.generate().recipient())]},
        "transfer": {"concurrency": concurrency},
        "datasets": [
            {
                "name": "scale",
                "source": {"endpoint": "src", "container": source.name, "prefix": ""},
                "target": {"endpoint": "dst", "container": "data", "prefix": ""},
                "encrypt": True,
            }
        ],
    }
    path = work / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def committed(journal: Path) -> int:
    """Objects the journal holds as committed (durable), read as another process would."""
    if not journal.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT COUNT(*) FROM objects WHERE state='committed'").fetchone()
            return int(row[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def figures(name: str, f: ProcessFigures, load: float) -> dict[str, Any]:
    return {
        "step": name,
        "exit_code": f.exit_code,
        "seconds": round(f.seconds, 1),
        "cpu_seconds": round(f.cpu_seconds, 1),
        "peak_rss_mib": round(f.peak_rss_bytes / 2**20, 1),
        "peak_tree_rss_mib": round(f.peak_tree_rss_bytes / 2**20, 1),
        "load_1min_before": round(load, 1),
        "error": "" if f.exit_code in (0, -9, 137) else f.stderr.strip()[-300:],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = args.workdir / "src" / "data"
    seed_seconds = seed(source, args.objects)
    work = args.workdir / "run"
    shutil.rmtree(work, ignore_errors=True)
    (work / "dst" / "data").mkdir(parents=True)
    config = write_config(work, source, args.concurrency)
    journal = work / "state" / "journal.db"
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env["PYTHONPATH"] = str(REPO_ROOT)
    cli = [sys.executable, "-m", "bascule.cli.app"]
    kill_at = random.Random(args.seed).randint(args.objects // 10, args.objects * 9 // 10)
    steps = []

    def step(name: str, argv: list[str], **kw: Any) -> ProcessFigures:
        load = load_1min()
        f = run_measured([*cli, *argv], env, work, work / f"{name}.out", **kw)
        steps.append(figures(name, f, load))
        print(json.dumps(steps[-1]), flush=True)
        return f

    migrate = ["migrate", "-c", str(config), "--executor", args.executor]
    step("migrate (killed)", migrate, kill_when=lambda: committed(journal) >= kill_at)
    at_kill = committed(journal)
    on_target_at_kill = _objects_in(work / "dst" / "data")
    step("migrate (resumed)", migrate)
    step("verify --level quick", ["verify", "-c", str(config), "--level", "quick"])
    step("status", ["status", "-c", str(config)])
    step("report --html", ["report", "-c", str(config), "--html", str(work / "report.html")])
    added = _drift(source, args.objects)
    try:
        step(f"migrate (final delta: {DRIFT} changed, {DRIFT} new)", migrate)
    finally:
        for path in added:
            path.unlink(missing_ok=True)
    return {
        "objects": args.objects,
        "executor": args.executor,
        "cpus": os.cpu_count(),
        "seed_seconds": round(seed_seconds, 1),
        "kill_when_committed": kill_at,
        "committed_at_kill": at_kill,
        # written by the killed run but not yet durable in its journal: sent again
        "on_target_at_kill": on_target_at_kill,
        "sent_again_after_kill": on_target_at_kill - at_kill,
        "journal_bytes_per_object": round(_journal_bytes(journal) / args.objects, 1),
        "target_objects": _objects_in(work / "dst" / "data") - DRIFT,
        "final_delta_committed": _committed_by_last_run(journal),
        "steps": steps,
    }


def _drift(source: Path, count: int) -> list[Path]:
    """What changes between the freeze and the final delta: DRIFT files rewritten (new
    content, same size) and DRIFT new ones, spread over the folders; the new paths (removed
    after the run, so that the seeded source stays N files)."""
    step = max(1, count // DRIFT)
    added = []
    for n in range(DRIFT):
        i = min(count - 1, n * step)
        folder = source / f"f{i // PER_FOLDER:05d}"
        (folder / f"o{i:07d}.txt").write_bytes(f"{count + i:011d}"[-11:].encode())
        added.append(folder / f"new-{n}.txt")
        added[-1].write_bytes(b"added later")
    return added


def _committed_by_last_run(journal: Path) -> int:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        last = "(SELECT MAX(run_id) FROM objects)"
        sql = f"SELECT COUNT(*) FROM objects WHERE state='committed' AND run_id={last}"
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


def _objects_in(folder: Path) -> int:
    """Files of the target that are objects (not a put's staging file)."""
    return sum(1 for p in folder.rglob("*.txt") if not p.name.startswith(".bascule-"))


def _journal_bytes(journal: Path) -> int:
    files = [journal, journal.with_name(journal.name + "-wal")]
    return sum(p.stat().st_size for p in files if p.exists())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__)
    p.add_argument("--objects", type=int, default=1_000_000)
    p.add_argument("--executor", default=f"processes:{os.cpu_count() or 1}")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/bascule-bench-scale"))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    report = run(args)
    print(json.dumps({k: v for k, v in report.items() if k != "steps"}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = [s for s in report["steps"][1:] if s["exit_code"] != 0]
    wrong = report["target_objects"] != args.objects or report["final_delta_committed"] != 2 * DRIFT
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Journal at scale: `status`, `report --html`, `verify --level quick`, freeze and drift gate
on a synthetic journal of N committed objects (default 1,000,000).

    .venv/bin/python -m benchmarks.bench_journal                 # 1M objects
    .venv/bin/python -m benchmarks.bench_journal --objects 100000 --workdir /tmp/bj

No storage: the journal is written through the Journal's connection in batched transactions,
and the listings come from a synthetic connector (`journal_child.SyntheticConnector`). Each
line is one child process; it prints the wall seconds, its CPU seconds (user + system, less
sensitive to other load on the machine), its peak RSS (the kernel's high-water mark) and the
1-minute load average before and after, since the machine may be shared. `status` and
`report` run after `verify`, so they aggregate the verify run's records as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bascule.age.keys import X25519Identity
from benchmarks.measure import ProcessFigures, run_measured

MiB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[1]


def write_config(folder: Path) -> Path:
    identity = X25519Identity.generate()
    data: dict[str, Any] = {
        "project": "journal-scale",
        "journal": "state/journal.db",
        "endpoints": {"src": {"kind": "local", "path": str(folder / "src")},
                      "dst": {"kind": "local", "path": str(folder / "dst")}},
        "encryption": {"recipients": [str(identity.recipient())]},
        "switchover": {"production_volume": "30TiB", "workers": 4},
        "datasets": [{"name": "d", "source": {"endpoint": "src", "container": "c",
                                              "prefix": "d/"},
                      "target": {"endpoint": "dst", "bucket": "b", "prefix": "hdh/"},
                      "encrypt": True}],
    }  # fmt: skip
    path = folder / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _line(name: str, figures: ProcessFigures, load: tuple[float, float], extra: str) -> str:
    ok = "ok" if figures.exit_code == 0 else f"exit {figures.exit_code}"
    return (
        f"{name:<22} {figures.seconds:8.2f} s  cpu {figures.cpu_seconds:7.2f} s  "
        f"peak RSS {figures.peak_rss_bytes / MiB:7.1f} MiB  "
        f"load {load[0]:.2f}->{load[1]:.2f}  {ok}  {extra}"
    )


def measure(name: str, cmd: list[str], folder: Path, extra: str = "") -> ProcessFigures:
    before = os.getloadavg()[0]
    env = dict(os.environ)
    # the children run in `folder`: they find `benchmarks` (and this checkout) by the path
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    figures = run_measured(cmd, env, folder, folder / f"{name}.out")
    after = os.getloadavg()[0]
    if figures.exit_code not in (0, 1):
        sys.stderr.write(figures.stderr[-2000:])
    lines = figures.stdout.strip().splitlines()
    note = extra or (lines[-1][:160] if lines else "")
    print(_line(name, figures, (before, after), note), flush=True)
    return figures


def run(objects: int, folder: Path) -> None:
    config = write_config(folder)
    child = [sys.executable, "-m", "benchmarks.journal_child"]
    cli = [sys.executable, "-m", "bascule.cli.app"]
    print(f"{objects} objects, {os.cpu_count()} cores; workdir {folder}", flush=True)
    measure("build journal", [*child, "build", str(config), str(objects)], folder)
    journal = folder / "state" / "journal.db"
    migrate_bytes = journal.stat().st_size
    measure("verify --level quick", [*child, "verify", str(config), str(objects)], folder)
    verify_bytes = journal.stat().st_size + _wal(journal)
    measure("status", [*cli, "status", "-c", str(config)], folder, "readiness table")
    html = folder / "report.html"
    measure("report --html", [*cli, "report", "-c", str(config), "--html", str(html)], folder,
            "self-contained HTML")  # fmt: skip
    fg = measure("freeze + drift gate", [*child, "freeze-gate", str(config), str(objects)], folder)
    if fg.exit_code == 0:
        print(f"  {json.loads(fg.stdout.strip().splitlines()[-1])}")
    frozen_bytes = journal.stat().st_size + _wal(journal)
    print(
        f"journal: {migrate_bytes / objects:.0f} bytes per committed object; "
        f"{(verify_bytes - migrate_bytes) / objects:.0f} more per object per verify run, "
        f"{(frozen_bytes - verify_bytes) / objects:.0f} per object per freeze snapshot",
        flush=True,
    )


def _wal(journal: Path) -> int:
    wal = journal.with_name(journal.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="keep everything here")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.objects, args.workdir)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        run(args.objects, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

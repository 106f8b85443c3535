"""`verify --level full --rows` of many small CSV objects, local disk to local disk, encrypted.

    python -m benchmarks.bench_verify [--objects 10000] [--executor auto|local|processes:N]
                                      [--json FILE] [--py-spy DIR]

Seeds `objects` small CSV files, migrates them with `bascule migrate` (not timed), then times
`bascule verify --level full --rows` as the CLI runs it, in its own process. Not part of the
test suite: figures depend on the machine and its load (recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bascule.age.stream import X25519Identity, write_identity_file
from benchmarks.lines import _profiled
from benchmarks.measure import run_measured

REPO_ROOT = Path(__file__).resolve().parents[1]


def _config(root: Path, recipient: str) -> Path:
    data: dict[str, Any] = {
        "project": "bench-verify",
        "journal": str(root / "state" / "journal.db"),
        "endpoints": {
            "src": {"kind": "local", "path": str(root / "src")},
            "dst": {"kind": "local", "path": str(root / "dst")},
        },
        "encryption": {"recipients": [recipient], "identity_file_env": "BENCH_AGE_IDENTITY"},
        "datasets": [
            {
                "name": "csv",
                "source": {"endpoint": "src", "prefix": ""},
                "target": {"endpoint": "dst", "prefix": ""},
                "encrypt": True,
                "format": "csv",
            }
        ],
    }
    path = root / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_verify", description=__doc__)
    p.add_argument("--objects", type=int, default=10000)
    p.add_argument("--json", type=Path)
    p.add_argument("--py-spy", type=Path, help="run verify under py-spy, write DIR/py-spy.txt")
    p.add_argument("--executor", default="auto", help="verify's --executor (auto, local, ...)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bascule-verify-"))
    try:
        for i in range(args.objects):
            path = root / "src" / f"d{i % 100:02d}" / f"t{i:06d}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f'id,note\n{i},a\n{i + 1},"b, c"\n'.encode())
        (root / "dst").mkdir()
        identity = X25519Identity.generate()
        write_identity_file(root / "id.txt", identity, "bench")
        config = _config(root, str(identity.recipient()))
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["BENCH_AGE_IDENTITY"] = str(root / "id.txt")
        bascule = [sys.executable, "-m", "bascule.cli.app"]
        migrate = run_measured([*bascule, "migrate", "-c", str(config)], env, root,
                               root / "migrate.out")  # fmt: skip
        load = os.getloadavg()
        cmd = [*bascule, "verify", "-c", str(config), "--level", "full", "--rows",
               "--executor", args.executor]  # fmt: skip
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            cmd = _profiled(cmd, args.py_spy)
        figures = run_measured(cmd, env, root, root / "verify.out")
        report = {
            "objects": args.objects,
            "executor": args.executor,
            "migrate_exit": migrate.exit_code,
            "verify_exit": figures.exit_code,
            "verify_seconds": round(figures.seconds, 2),
            "verify_cpu_seconds": round(figures.cpu_seconds, 2),
            "load_before": load,
            "load_after": os.getloadavg(),
            "error": figures.stderr.strip()[-300:] if figures.exit_code else "",
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["verify_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

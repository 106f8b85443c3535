"""One `bascule migrate`, as the CLI runs it, in its own process; prints its figures as JSON.

Usage: python -m benchmarks.bascule_child CONFIG EXECUTOR   (EXECUTOR as `--executor` takes it)

`engine_seconds` is the service's own run time (after the configuration is loaded, the
listing is done and the executor is up: a Dask cluster's start-up is outside it); the parent
times the whole process as well. `coordinator_cpu_seconds` is this process's CPU, start-up
included, and `workers_cpu_seconds` that of the `processes:N` workers (0 on threads; a Dask
cluster's workers are not children of this process).
"""

from __future__ import annotations

import cProfile
import json
import os
import sys
from pathlib import Path

from bascule.cli import early
from bascule.tuning import tune_allocator, tune_gc


def main(argv: list[str]) -> int:
    config_path, executor = argv
    tune_allocator()  # as the CLI does: workers started early, then the imports
    early.start_for("migrate", ["migrate", "-c", config_path, "--executor", executor])
    from bascule.cli.common import setup_logging
    from bascule.config import load_config
    from bascule.migration import service
    from bascule.processes import end_early
    from bascule.runners import choose_executor, make_runner

    tune_gc()
    cfg = load_config(Path(config_path))
    setup_logging(cfg)
    try:
        runner = make_runner(choose_executor(executor, cfg), cfg.transfer.concurrency)
    finally:
        end_early()
    try:
        outcome = service.migrate(cfg, runner=runner)
    finally:
        runner.shutdown()
    spent = os.times()  # worker processes are reaped by shutdown: their CPU is children's
    figures = {
        "engine_seconds": outcome.seconds,
        "coordinator_cpu_seconds": round(spent.user + spent.system, 3),
        "workers_cpu_seconds": round(spent.children_user + spent.children_system, 3),
        "bytes": outcome.stats.bytes_sent,
        "objects": outcome.stats.objects_committed,
        "parts": outcome.stats.parts_sent,
    }
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


def _profiled(argv: list[str], out: str) -> int:
    profile = cProfile.Profile()
    try:
        return int(profile.runcall(main, argv))
    finally:
        profile.dump_stats(out)


if __name__ == "__main__":
    from bascule.cli.app import leave

    stats = os.environ.get("BASCULE_BENCH_CPROFILE")
    leave(_profiled(sys.argv[1:], stats) if stats else main(sys.argv[1:]))  # as the CLI leaves

"""Worker processes started before a command has loaded its configuration.

`migrate` and `verify` on `--executor auto` run on worker processes when every store is a
folder on a local disk (`runners.choose_executor`, which decides, once the configuration is
loaded and checked). Loading it takes the first 0.3 s of the command on one core (the
configuration's models, the journal, the copy engine); a worker's own start-up costs about
as much. So `main` asks `early_workers` first, from the command line and a plain read of the
configuration file, and starts that many workers (`processes.start_early`): they start while
this process loads, and the runner takes them. A guess that turns out wrong costs their
start-up only: the workers not taken are ended, having run nothing.

This module reads the file with a YAML parser only (no validation: a file `load_config`
would refuse gives 0 here, and the command then says what is wrong with it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bascule.tuning import DEFAULT_CONCURRENCY, usable_cores

# command -> the modules its tasks run from (imported by each worker before its first task)
PRELOAD: dict[str, tuple[str, ...]] = {
    "migrate": ("bascule.migration.tasks",),
    "verify": ("bascule.verification.reread",),
}
_PROCESSES = re.compile(r"^processes:(\d+)$")
_HELP = frozenset({"--help", "-h"})


def early_workers(command: str | None, args: Sequence[str], cores: int) -> int:
    """How many workers to start early for `bascule <args>`: those `--executor` names
    (`processes:N`), or for `auto` (the default) `cores` at most `transfer.concurrency`
    when every dataset's source and target endpoint is `kind: local`; 0 for any other
    command, executor, `--help`, `--dry-run`, or a configuration file that cannot be read."""
    if command not in PRELOAD or _HELP.intersection(args) or "--dry-run" in args:
        return 0
    executor = _option(args, "--executor") or "auto"
    named = _PROCESSES.match(executor)
    if named:
        return int(named.group(1))
    if executor != "auto" or cores < 2:
        return 0
    config = _read(Path(_option(args, "--config", "-c") or "bascule.yaml"))
    if config is None or not _all_local(config):
        return 0
    transfer = config.get("transfer")
    concurrency = transfer.get("concurrency") if isinstance(transfer, dict) else None
    wanted = concurrency if isinstance(concurrency, int) else DEFAULT_CONCURRENCY
    count = min(cores, wanted)
    return count if count >= 2 else 0


def _option(args: Sequence[str], *names: str) -> str | None:
    """The value of the last `--name VALUE` or `--name=VALUE` in `args`."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
    return found


def _read(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _all_local(config: dict[str, Any]) -> bool:
    endpoints, datasets = config.get("endpoints"), config.get("datasets")
    if not isinstance(endpoints, dict) or not isinstance(datasets, list) or not datasets:
        return False
    for dataset in datasets:
        if not isinstance(dataset, dict):
            return False
        for side in ("source", "target"):
            where = dataset.get(side)
            name = where.get("endpoint") if isinstance(where, dict) else None
            endpoint = endpoints.get(name) if isinstance(name, str) else None
            if not isinstance(endpoint, dict) or endpoint.get("kind") != "local":
                return False
    return True


def start_for(command: str | None, args: Sequence[str]) -> None:
    """Start the workers `early_workers` asks for, if any."""
    count = early_workers(command, args, usable_cores())
    if count and command is not None:
        from bascule.processes import start_early

        start_early(count, PRELOAD[command])

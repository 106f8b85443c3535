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


def read_config(args: Sequence[str]) -> dict[str, Any] | None:
    """The configuration file `--config`/`-c` names (default `bascule.yaml`), as plain YAML;
    None when it cannot be read as a mapping."""
    return _read(Path(_option(args, "--config", "-c") or "bascule.yaml"))


def early_workers(
    command: str | None, args: Sequence[str], cores: int, config: dict[str, Any] | None
) -> int:
    """How many workers to start early for `bascule <args>` (`config`: `read_config(args)`):
    those `--executor` names (`processes:N`), or for `auto` (the default) `cores` at most
    `transfer.concurrency` when every dataset's source and target endpoint is
    `kind: local`; 0 for any other command, executor, `--help`, `--dry-run`, or a
    configuration file that cannot be read."""
    if command not in PRELOAD or _HELP.intersection(args) or "--dry-run" in args:
        return 0
    executor = _option(args, "--executor") or "auto"
    named = _PROCESSES.match(executor)
    if named:
        return int(named.group(1))
    if executor != "auto" or cores < 2:
        return 0
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


def early_recipients(command: str | None, config: dict[str, Any] | None) -> tuple[str, ...]:
    """The age recipients a `migrate` will encrypt for, as `config` (`read_config`) names
    them (unchecked: `precompute_ephemerals` parses them, and a share made for a key the
    checked configuration does not hold is never used); () when no dataset is encrypted."""
    if command != "migrate":
        return ()
    datasets = config.get("datasets") if config is not None else None
    encryption = config.get("encryption") if config is not None else None
    if not isinstance(datasets, list) or not isinstance(encryption, dict):
        return ()
    if not any(isinstance(d, dict) and d.get("encrypt", True) is not False for d in datasets):
        return ()
    recipients = encryption.get("recipients")
    if not isinstance(recipients, list):
        return ()
    return tuple(r for r in recipients if isinstance(r, str))


def start_for(command: str | None, args: Sequence[str]) -> None:
    """Start the workers `early_workers` asks for, if any; for a `migrate` that encrypts,
    they make age header shares (`precompute_ephemerals`) until the runner takes them."""
    if command not in PRELOAD:
        return
    config = read_config(args)  # once, for both questions
    count = early_workers(command, args, usable_cores(), config)
    if not count:
        return
    from bascule.processes import start_early, while_early_idle

    start_early(count, PRELOAD[command])
    recipients = early_recipients(command, config)
    if recipients:
        from bascule.age.keys import precompute_ephemerals

        while_early_idle(precompute_ephemerals, recipients)

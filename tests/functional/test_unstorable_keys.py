"""Keys the target cannot store are found by `plan`, and `migrate` refuses to start while any
is planned; a source swapped for a link after planning is not copied. Local folders on both
sides, through the service and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar, TypeVarTuple

import pytest
import yaml

from bascule.config import Config, load_config
from bascule.errors import ExitCode, ObjectNotFound, PlanError
from bascule.migration import service
from bascule.migration.plan import ObjectPlan
from bascule.runners import ThreadRunner

BASCULE = [sys.executable, "-m", "bascule.cli.app"]
NOT_UTF8 = os.fsdecode(b"caf\xe9.csv")  # a Latin-1 file name: no target or journal holds it


def _config(tmp_path: Path, recipient: str, source_prefix: str, target_prefix: str) -> Path:
    (tmp_path / "src" / "c").mkdir(parents=True, exist_ok=True)
    (tmp_path / "dst" / "b").mkdir(parents=True, exist_ok=True)
    data = {
        "project": "test",
        "journal": "state/journal.db",
        "endpoints": {
            "src": {"kind": "local", "path": str(tmp_path / "src")},
            "dst": {"kind": "local", "path": str(tmp_path / "dst")},
        },
        "encryption": {"recipients": [recipient]},
        "datasets": [
            {"name": "ds", "source": {"endpoint": "src", "container": "c",
                                      "prefix": source_prefix},
             "target": {"endpoint": "dst", "bucket": "b", "prefix": target_prefix},
             "encrypt": False}
        ],
    }  # fmt: skip
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _seed(tmp_path: Path, *keys: str) -> None:
    for key in keys:
        path = tmp_path / "src" / "c" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"plaintext " + os.fsencode(key))


def _written(tmp_path: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*"))


@pytest.fixture()
def blocked_config(tmp_path: Path, identity_file: tuple[Path, str]) -> Config:
    # Target prefix "": "in/.bascule-uploads/..." maps onto the target's staging folder.
    _seed(tmp_path, "in/ok.csv", "in/.bascule-uploads/p.bin", "in/" + NOT_UTF8)
    return load_config(_config(tmp_path, identity_file[1], "in/", ""))


def test_plan_lists_unstorable_keys_and_migrate_refuses_writing_nothing(
    tmp_path: Path, blocked_config: Config
) -> None:
    plan, items = service.plan_stream(blocked_config, None, None)
    objects = [i.source_key for i in items if isinstance(i, ObjectPlan)]
    assert {b.target_key for b in plan.first_blocked} == {".bascule-uploads/p.bin", NOT_UTF8}
    assert objects == ["in/ok.csv"]
    with pytest.raises(PlanError) as refused:
        service.migrate(blocked_config)
    message = str(refused.value)
    assert message.startswith("2 object(s) cannot be stored on the target")
    assert "in/.bascule-uploads/p.bin" in message and "exclude" in message
    assert refused.value.exit_code == ExitCode.USAGE
    assert _written(tmp_path) == ["b"]  # not even a staging folder
    assert not (tmp_path / "state").exists()


def test_plan_cli_shows_blocked_keys_in_the_table_and_in_json(
    tmp_path: Path, blocked_config: Config
) -> None:
    config = str(tmp_path / "bascule.yaml")
    table = subprocess.run([*BASCULE, "plan", "-c", config], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "blocked: ds:in/.bascule-uploads/p.bin -> .bascule-uploads/p.bin" in table.stdout
    as_json = subprocess.run(
        [*BASCULE, "plan", "-c", config, "--json"], capture_output=True, text=True
    )
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert lines[-1]["type"] == "summary" and lines[-1]["totals"]["blocked"] == 2
    blocked = {r["target_key"] for r in lines if r["type"] == "blocked"}
    assert blocked >= {".bascule-uploads/p.bin"}
    migrate = subprocess.run([*BASCULE, "migrate", "-c", config], capture_output=True, text=True)
    lines = [line for line in migrate.stderr.splitlines() if line.strip()]
    assert migrate.returncode == 2 and len(lines) == 1, migrate.stderr
    assert _written(tmp_path) == ["b"]


def test_a_local_source_reserved_folder_is_reported_not_silently_skipped(
    tmp_path: Path, identity_file: tuple[Path, str]
) -> None:
    _seed(tmp_path, "a.csv", ".bascule-uploads/x/1", ".bascule-meta/a.csv.json")
    cfg = load_config(_config(tmp_path, identity_file[1], "", "copy/"))
    plan = service.count_plan(cfg, None, None)
    assert plan.datasets[0].skipped == (".bascule-meta/", ".bascule-uploads/")
    assert list(plan.to_dict()["datasets"][0]["skipped"]) == [".bascule-meta/", ".bascule-uploads/"]
    out = subprocess.run(
        [*BASCULE, "plan", "-c", str(tmp_path / "bascule.yaml")], capture_output=True, text=True
    )
    assert "skipped (reserved by bascule): ds:.bascule-uploads/" in out.stdout
    outcome = service.migrate(cfg)
    assert outcome.stats.objects_committed == 1
    assert outcome.plan.datasets[0].skipped == (".bascule-meta/", ".bascule-uploads/")


R = TypeVar("R")
Ts = TypeVarTuple("Ts")


class SwapThenRun(ThreadRunner):
    """Before the first part runs, the planned source file becomes a link to a secret."""

    def __init__(self, source: Path, secret: Path) -> None:
        super().__init__(1)
        self.swap = (source, secret)

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        source, secret = self.swap
        if not source.is_symlink():
            source.unlink()
            source.symlink_to(secret)
        return super().submit(fn, *args)


def test_a_source_swapped_for_a_link_after_planning_is_not_copied(
    tmp_path: Path, identity_file: tuple[Path, str]
) -> None:
    _seed(tmp_path, "in/a.csv")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET outside the source")
    cfg = load_config(_config(tmp_path, identity_file[1], "in/", "out/"))
    runner = SwapThenRun(tmp_path / "src" / "c" / "in" / "a.csv", secret)
    with pytest.raises(ObjectNotFound, match="symbolic link"):
        service.migrate(cfg, runner=runner)
    copied = [p.read_bytes() for p in (tmp_path / "dst").rglob("*") if p.is_file()]
    assert not any(b"SECRET" in data for data in copied)

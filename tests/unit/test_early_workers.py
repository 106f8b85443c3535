"""`cli/early.py`: how many workers a command line asks to be started before its imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.cli import early
from bascule.cli.early import read_config


def _config(tmp_path: Path, *, kinds: tuple[str, str] = ("local", "local"), **extra: Any) -> Path:
    dataset = {
        "name": "d",
        "source": {"endpoint": "src", "container": "a"},
        "target": {"endpoint": "dst", "container": "b"},
    }
    doc: dict[str, Any] = {
        "project": "p",
        "endpoints": {"src": {"kind": kinds[0], "path": "/s"}, "dst": {"kind": kinds[1]}},
        "datasets": [dataset],
        **extra,
    }
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def early_workers(command: str | None, args: list[str], cores: int) -> int:
    return early.early_workers(command, args, cores, read_config(args))


def early_recipients(command: str, args: list[str]) -> tuple[str, ...]:
    return early.early_recipients(command, read_config(args))


@pytest.mark.parametrize("command", ["migrate", "verify"])
def test_auto_between_local_endpoints_starts_the_cores_up_to_the_concurrency(
    tmp_path: Path, command: str
) -> None:
    cfg = str(_config(tmp_path))
    assert early_workers(command, [command, "-c", cfg], cores=4) == 4
    assert early_workers(command, [command, f"--config={cfg}", "--executor", "auto"], 16) == 8
    capped = str(_config(tmp_path, transfer={"concurrency": 3}))
    assert early_workers(command, [command, "-c", capped], cores=4) == 3


def test_a_named_processes_executor_is_started_whatever_the_stores(tmp_path: Path) -> None:
    cfg = str(_config(tmp_path, kinds=("azure_blob", "s3")))
    assert early_workers("migrate", ["migrate", "-c", cfg, "--executor=processes:3"], 1) == 3


@pytest.mark.parametrize(
    "args",
    [
        ["--executor", "local"],
        ["--executor", "dask-local:2"],
        ["--dry-run"],
        ["--help"],
    ],
)
def test_nothing_starts_for_threads_dask_a_dry_run_or_help(tmp_path: Path, args: list[str]) -> None:
    cfg = str(_config(tmp_path))
    assert early_workers("migrate", ["migrate", "-c", cfg, *args], cores=4) == 0


def test_nothing_starts_for_other_commands_one_core_or_a_low_concurrency(
    tmp_path: Path,
) -> None:
    cfg = str(_config(tmp_path))
    assert early_workers("plan", ["plan", "-c", cfg], cores=4) == 0
    assert early_workers(None, ["--help"], cores=4) == 0
    assert early_workers("migrate", ["migrate", "-c", cfg], cores=1) == 0
    one = str(_config(tmp_path, transfer={"concurrency": 1}))
    assert early_workers("migrate", ["migrate", "-c", one], cores=4) == 0


@pytest.mark.parametrize("kinds", [("local", "s3"), ("azure_blob", "local"), ("rclone", "local")])
def test_nothing_starts_when_a_store_is_not_a_local_folder(
    tmp_path: Path, kinds: tuple[str, str]
) -> None:
    cfg = str(_config(tmp_path, kinds=kinds))
    assert early_workers("migrate", ["migrate", "-c", cfg], cores=4) == 0


@pytest.mark.parametrize("text", ["[1, 2]", "endpoints: [", "project: p\n", "\xff\xfe"])
def test_a_file_that_is_not_a_readable_config_starts_nothing(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bascule.yaml"
    path.write_bytes(text.encode("latin-1"))
    assert early_workers("migrate", ["migrate", "-c", str(path)], cores=4) == 0
    missing = str(tmp_path / "none.yaml")
    assert early_workers("migrate", ["migrate", "-c", missing], cores=4) == 0


def test_a_migrate_that_encrypts_gives_its_recipients_to_the_early_workers(
    tmp_path: Path,
) -> None:
    keys = {"recipients": ["age1one", "age1two", 3]}
    cfg = str(_config(tmp_path, encryption=keys))
    assert early_recipients("migrate", ["migrate", "-c", cfg]) == ("age1one", "age1two")
    assert early_recipients("verify", ["verify", "-c", cfg]) == ()  # verify makes no header
    plain = _config(tmp_path, encryption=keys)
    doc = yaml.safe_load(plain.read_text())
    doc["datasets"][0]["encrypt"] = False
    plain.write_text(yaml.safe_dump(doc))
    assert early_recipients("migrate", ["migrate", "-c", str(plain)]) == ()
    assert early_recipients("migrate", ["migrate", "-c", str(tmp_path / "none.yaml")]) == ()

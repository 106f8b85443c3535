"""Runbooks on local folders: untrusted text never stops a run, a failing reporting callback
never keeps the rollback from running, and a timed-out command leaves no process behind."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.config import Config, load_config
from bascule.migration.journal import RunRow
from bascule.runbook import engine
from bascule.runbook.context import RunOptions, StepResult
from bascule.runbook.schema import load_runbook

BASCULE = [sys.executable, "-m", "bascule.cli.app"]


def _config(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"x")
    data = {
        "project": "safety",
        "journal": "state/journal.db",
        "endpoints": {"src": {"kind": "local", "path": str(tmp_path / "src")},
                      "dst": {"kind": "local", "path": str(tmp_path / "dst")}},
        "datasets": [{"name": "snds", "source": {"endpoint": "src"},
                      "target": {"endpoint": "dst"}, "encrypt": False}],
        "switchover": {"routing": {"path": "routing.json"}},
    }  # fmt: skip
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _runbook(tmp_path: Path, steps: list[dict[str, Any]], rollback: Any = None) -> Path:
    doc: dict[str, Any] = {"runbook": "safety", "phases": [{"name": "p", "steps": steps}]}
    if rollback is not None:
        doc["rollback"] = rollback
    path = tmp_path / "book.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASCULE, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def _routing(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "routing.json").read_text()))


def _runs(cfg: Config) -> list[RunRow]:
    from bascule.migration.service import open_journal

    journal = open_journal(cfg, create=False)
    assert journal is not None
    try:
        return journal.runs("execute")
    finally:
        journal.close()


SWITCH_THEN_MARKUP = [
    {"name": "switch", "kind": "switch", "to": "target"},
    {"name": "noisy", "kind": "shell", "command": "echo 'closing [/red] tag [bold]'; exit 5"},
]  # fmt: skip
BACK = [{"name": "back", "kind": "switch", "to": "source"}]


def test_markup_in_step_output_does_not_stop_the_rollback(tmp_path: Path) -> None:
    config = _config(tmp_path)
    book = _runbook(tmp_path, SWITCH_THEN_MARKUP, BACK)
    done = _cli("runbook", "execute", str(book), "-c", str(config), "--yes", "--force",
                "--reason", "markup test")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "closing [/red] tag [bold]" in done.stdout  # printed as is, not as markup
    assert "rolled_back" in done.stderr
    assert _routing(tmp_path)["active"] == "source"


def test_a_failing_reporting_callback_never_skips_the_rollback(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path))
    steps = [*SWITCH_THEN_MARKUP[:1], {"name": "broken", "kind": "shell", "command": "exit 3"}]
    book = load_runbook(_runbook(tmp_path, steps, BACK), ["snds"])
    seen: list[str] = []

    def on_step(result: StepResult) -> None:
        seen.append(result.step.name)
        if result.step.name != "back":
            raise RuntimeError("the terminal went away")

    def on_start(phase: str, step: object) -> None:
        raise ValueError("cannot render")

    options = replace(RunOptions(force_reason="callback test"), on_step=on_step,
                      on_start=on_start)  # fmt: skip
    out = engine.execute(cfg, book, options)
    assert out.status == "rolled_back"
    assert seen == ["switch", "broken", "back"]
    assert _routing(tmp_path)["active"] == "source"
    assert _runs(cfg)[-1].status == "rolled_back"


def test_a_key_with_markup_does_not_crash_plan(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "dst" / "odd [").mkdir()  # an object only the target has: key "odd [/x] ..."
    (tmp_path / "dst" / "odd [" / "x] name [red].bin").write_bytes(b"y")
    done = _cli("plan", "-c", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "extra on target (snds): odd [/x] name [red].bin" in done.stdout


def _state(pid: int) -> str:
    """The process's state letter ('Z' for a zombie), or '' when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("trap", ["", "trap '' TERM; "])
def test_a_timed_out_step_leaves_no_process_behind(tmp_path: Path, trap: str) -> None:
    """The shell's grandchild (a sleep, which may even ignore SIGTERM) dies with the step."""
    config = _config(tmp_path)
    pidfile = tmp_path / "grandchild.pid"
    late = tmp_path / "late"
    command = f'sh -c "{trap}sleep 300; touch {late}" & echo $! > {pidfile}; wait'
    steps = [{"name": "slow", "kind": "shell", "command": command, "timeout": "1s"}]
    book = _runbook(tmp_path, steps)
    done = _cli("runbook", "rehearse", str(book), "-c", str(config))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "timed out" in done.stdout + done.stderr
    pid = int(pidfile.read_text())
    assert _state(pid) in ("", "Z")
    assert not late.exists()

"""Bad runbooks: file:line, what is wrong and the fix, exit 2, and nothing run (no journal,
no storage access: the config points at local folders that must stay empty)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

GOOD = """\
runbook: t
phases:
  - name: p
    steps:
      - name: copy
        kind: copy
        datasets: [snds]
      - name: gate
        kind: gate
        conditions: [no_source_drift]
"""

CASES = {
    # name: (runbook text, line, words the message must hold)
    "unknown step kind": (GOOD.replace("kind: copy", "kind: teleport"), 6, ["teleport", "check"]),
    "missing field": (GOOD.replace("        conditions: [no_source_drift]\n", ""), 8,
                      ["missing required key 'conditions'"]),
    "wrong type": (GOOD.replace("kind: copy\n", "kind: verify\n        rows: maybe\n"), 7,
                   ["rows", "true or false", "maybe"]),
    "unknown dataset": (GOOD.replace("[snds]", "[snds, dcir-2099]"), 7, ["dcir-2099", "snds"]),
    "unknown key": (GOOD.replace("kind: copy", "kind: copy\n        mod: full"), 7,
                    ["unknown key 'mod'"]),
    "yaml syntax": (GOOD.replace("name: p", "name: [p"), 4, ["not valid YAML"]),
}  # fmt: skip


def _config(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"x")
    data = {
        "project": "schema",
        "journal": "state/journal.db",
        "endpoints": {"src": {"kind": "local", "path": str(tmp_path / "src")},
                      "dst": {"kind": "local", "path": str(tmp_path / "dst")}},
        "datasets": [{"name": "snds", "source": {"endpoint": "src"},
                      "target": {"endpoint": "dst"}, "encrypt": False}],
    }  # fmt: skip
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mode", ["rehearse", "execute"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_runbook_names_file_and_line_and_runs_nothing(
    case: str, mode: str, tmp_path: Path
) -> None:
    text, line, words = CASES[case]
    config = _config(tmp_path)
    book = tmp_path / "bad.yaml"
    book.write_text(text)
    extra = ["--yes", "--force", "--reason", "r"] if mode == "execute" else []
    done = subprocess.run(
        [sys.executable, "-m", "bascule.cli.app", "runbook", mode, str(book),
         "-c", str(config), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    message = done.stderr.strip()
    assert message.startswith(f"error: {book}:{line}:"), message
    for word in words:
        assert word in message
    assert len(message.splitlines()) == 1
    assert not (tmp_path / "state").exists()  # no journal: nothing ran
    assert list((tmp_path / "dst").iterdir()) == []


def test_good_runbook_of_the_table_runs(tmp_path: Path) -> None:
    """The control: the unbroken text passes the schema and runs."""
    config = _config(tmp_path)
    book = tmp_path / "good.yaml"
    book.write_text(GOOD)
    done = subprocess.run(
        [sys.executable, "-m", "bascule.cli.app", "runbook", "rehearse", str(book),
         "-c", str(config), "--keep"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # the gate needs a freeze first
    assert "no freeze before this gate" in done.stderr
    [kept] = (tmp_path / "dst" / "rehearsal").iterdir()
    assert f"rehearsal {kept.name} of t" in done.stdout
    assert (kept / "a.bin").read_bytes() == b"x"

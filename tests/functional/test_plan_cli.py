"""`bascule plan` on local folders: JSON lines, then the summary; the table from counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bascule.cli.app import app
from bascule.migration import service
from tests.functional.conftest import LocalConfig

runner = CliRunner()


def _seed(tmp_path: Path) -> None:
    for i in range(30):
        path = tmp_path / "src" / "c" / "in" / f"d{i % 3}" / f"f{i:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * i)
    stray = tmp_path / "dst" / "b" / "out" / "stray.bin"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"s")


def test_plan_json_is_one_line_per_object_then_a_summary(
    tmp_path: Path, local_config: LocalConfig
) -> None:
    cfg = local_config()
    _seed(tmp_path)
    service.migrate(cfg)  # everything copied: the next plan finds them unchanged
    (tmp_path / "src" / "c" / "in" / "d0" / "f00.bin").write_bytes(b"changed")
    (tmp_path / "src" / "c" / "in" / "new.bin").write_bytes(b"new")
    config = str(tmp_path / "bascule.yaml")

    result = runner.invoke(app, ["plan", "-c", config, "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary"
    objects = [r for r in lines if r["type"] == "object"]
    assert {(o["source_key"], o["action"]) for o in objects} == {
        ("in/d0/f00.bin", "changed"), ("in/new.bin", "new")
    }  # fmt: skip
    assert objects[0]["parts"][0]["number"] == 1
    assert [r["target_key"] for r in lines if r["type"] == "extra"] == ["out/stray.bin"]
    assert sum(r["type"] == "unchanged" for r in lines) == 29
    keys = [r.get("target_key") or r["source_key"].replace("in/", "out/") for r in lines[:-1]]
    assert keys == sorted(keys)  # streamed in key order
    totals = summary["totals"]
    assert (totals["objects"], totals["unchanged"], totals["extra"]) == (2, 29, 1)
    assert totals["bytes"] == len(b"changed") + len(b"new")
    assert summary["datasets"][0]["dataset"] == "ds"

    table = runner.invoke(app, ["plan", "-c", config])
    assert table.exit_code == 0, table.output
    assert "total: 2 objects" in table.stdout
    assert "extra on target (ds): out/stray.bin" in table.stdout


def test_plan_counts_what_it_reads_on_a_terminal_and_keeps_stdout_the_plans(
    tmp_path: Path, local_config: LocalConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from bascule.cli import migrate as cli_migrate
    from bascule.cli.common import RedactingConsole

    local_config()
    _seed(tmp_path)
    screen = io.StringIO()
    terminal = RedactingConsole(file=screen, force_terminal=True, width=100, markup=False)
    monkeypatch.setattr(cli_migrate, "err_console", terminal)
    monkeypatch.setattr(cli_migrate, "STATUS_EVERY_S", 0.0)  # every entry redrawn

    result = runner.invoke(app, ["plan", "-c", str(tmp_path / "bascule.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    assert "planning: 31 objects read" in screen.getvalue()  # 30 to copy, 1 extra
    assert all(json.loads(line) for line in result.stdout.splitlines())  # JSON lines only

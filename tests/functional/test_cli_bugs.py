"""A bug reaches the operator as a bug: one line without --debug, the traceback with it.

The connectors map only their SDK's exceptions; anything else (here a `TypeError` raised in
the local connector's listing) propagates to the CLI, which must neither call it a storage
error nor print a traceback unless asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.functional.conftest import LocalConfig

# The real CLI in a fresh interpreter, with a bug planted in the source connector's listing.
RUN_WITH_A_BUG = """
import sys
from bascule.connectors.local import LocalConnector

def listing(self, prefix):
    raise TypeError("an injected programming error")

LocalConnector._walk = listing
from bascule.cli.app import app
app(sys.argv[1:], prog_name="bascule")
"""


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_WITH_A_BUG, *argv], capture_output=True, text=True, timeout=120
    )


def test_a_bug_is_one_line_asking_for_debug(local_config: LocalConfig, tmp_path: Path) -> None:
    local_config()
    done = run("plan", "-c", str(tmp_path / "bascule.yaml"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, done.stderr
    assert "a bug in bascule" in lines[0]
    assert "re-run with --debug" in lines[0]
    assert "TypeError: an injected programming error" in lines[0]
    assert "storage" not in lines[0]


def test_debug_shows_the_traceback_of_the_bug(local_config: LocalConfig, tmp_path: Path) -> None:
    local_config()
    done = run("--debug", "plan", "-c", str(tmp_path / "bascule.yaml"))
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "TypeError: an injected programming error" in done.stderr
    assert "in listing" in done.stderr  # the frame where the bug is

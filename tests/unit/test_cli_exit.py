"""The CLI leaves without tearing the interpreter down, but as Python would have left: exit
handlers run, buffered output reaches the pipe, the exit code is the command's."""

from __future__ import annotations

import subprocess
import sys

import pytest


def leave(code: str) -> subprocess.CompletedProcess[str]:
    script = (
        "import atexit, sys\n"
        "from bascule.cli import app\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "sys.stdout.write('x' * 200000)\n"  # more than a pipe holds: still buffered here
        f"app.leave({code})\n"
        "print('never')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(("code", "expected"), [("None", 0), ("0", 0), ("2", 2), ("7", 7)])
def test_the_exit_code_output_and_handlers_are_kept(code: str, expected: int) -> None:
    done = leave(code)
    assert done.returncode == expected
    assert done.stdout == "x" * 200000 + "handler ran\n"


def test_a_message_as_exit_code_is_printed_and_exits_1() -> None:
    done = leave("'error: what, where, what to do'")
    assert (done.returncode, done.stderr) == (1, "error: what, where, what to do\n")

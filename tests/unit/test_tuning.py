"""The allocator tuning every CLI and worker process makes at start."""

from __future__ import annotations

import ctypes
import subprocess
from typing import Any

import pytest

from bascule.tuning import tune_allocator


def test_the_allocator_is_tuned_without_starting_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ctypes.util.find_library` runs `ldconfig -p`: a process more at every start."""
    calls: list[tuple[int, int]] = []
    real_cdll = ctypes.CDLL

    class Recording:
        def __init__(self, name: str | None, *args: Any, **kwargs: Any) -> None:
            self._lib = real_cdll(name, *args, **kwargs)

        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return int(self._lib.mallopt(param, value))

    def no_process(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a process was started: {args[0]!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    monkeypatch.setattr(ctypes, "CDLL", Recording)
    tune_allocator()
    assert calls == [(-3, 1024 * 1024)]  # M_MMAP_THRESHOLD, 1 MiB

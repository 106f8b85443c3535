"""The benchmarks name the processor they ran on (ratios of two sittings compare only on
one), read the cores' idle time, and refuse a work folder that does not
exist in one line."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

from benchmarks.measure import cpu_model, idle_core_seconds, python_build

REPO = Path(__file__).resolve().parents[2]

_X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
cpu MHz\t\t: 2245.780

processor\t: 1
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC
cpu MHz\t\t: 2100.000
"""

_ARM = """processor\t: 0
BogoMIPS\t: 50.00
CPU implementer\t: 0x41
"""


def test_the_first_processor_is_named_with_family_model_and_clock(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(_X86)
    assert cpu_model(info) == "AMD EPYC (family 23, model 49), 2246 MHz"


def test_a_kernel_that_names_no_model_gives_unknown(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(_ARM)
    assert cpu_model(info) == "unknown"
    assert cpu_model(tmp_path / "absent") == "unknown"


def test_bench_tiny_refuses_a_missing_workdir_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_tiny", "--workdir", str(missing)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert f"--workdir {missing}: no such folder" in last
    assert "Traceback" not in done.stderr
    assert not missing.exists()


def test_the_interpreter_says_whether_libpython_is_shared(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libpython3.11.so.1.0\n")
    assert python_build(maps).endswith(", shared libpython)")
    maps.write_text("5600-5601 r-xp 0 08:01 1 /usr/bin/python3.11\n")
    assert python_build(maps).endswith(", libpython in the executable)")
    assert python_build(tmp_path / "absent").endswith(", libpython linkage unknown)")
    assert python_build(maps).startswith(f"CPython {platform.python_version()} ({sys.base_prefix}")


def test_idle_core_seconds_are_read_and_never_go_down() -> None:
    first = idle_core_seconds()
    assert first > 0
    assert idle_core_seconds() >= first

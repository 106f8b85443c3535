"""Run one command as a child process and measure its wall time and peak memory.

Peak RSS comes from two sources:
- the kernel's own high-water mark of the child, as reported by GNU time (`/usr/bin/time -f
  %M`): exact, for that one process. (Not `wait4` on our own child: Linux carries the forking
  parent's high-water mark across exec, so every child would look at least as large as us.)
- a psutil poll (every 50 ms) of the child plus all its descendants, summed: catches Dask
  worker processes, may miss a peak shorter than the poll, and counts shared pages once per
  process.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_S = 0.05
GNU_TIME = "/usr/bin/time"


@dataclass(frozen=True)
class ProcessFigures:
    seconds: float
    exit_code: int
    peak_rss_bytes: int  # the child itself, from the kernel
    peak_tree_rss_bytes: int  # child + descendants, sampled
    cpu_seconds: float  # user + system, of the command and the descendants it waited for
    stdout: str
    stderr: str


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The host's processor as /proc/cpuinfo names it, with its family, model and clock
    (``AMD EPYC (family 23, model 49), 2246 MHz``): hosts of one name differ by up to 1.5x
    in interpreted code while a Go program barely moves, so ratios of two sittings compare
    only on one processor. "unknown" where the kernel does not say."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "unknown"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields.setdefault(name.strip(), value.strip())
    if "model name" not in fields:
        return "unknown"
    described = fields["model name"]
    if "cpu family" in fields and "model" in fields:
        described += f" (family {fields['cpu family']}, model {fields['model']})"
    if "cpu MHz" in fields:
        described += f", {float(fields['cpu MHz']):.0f} MHz"
    return described


def python_build(maps: Path = Path("/proc/self/maps")) -> str:
    """The interpreter running the benchmark (its children are the same one): version, base
    prefix and whether libpython is a shared library mapped into the process. The build
    weighs on bascule's per-object figures: on one 2-core host, pyenv's default build (shared
    libpython, no profile-guided optimisation) ran the tiny-file line in 4.18 s and 7.95 CPU
    s, Debian's python3.11 (libpython linked into the executable) in 3.44 s and 6.49."""
    try:
        mapped = "libpython" in maps.read_text()
        linkage = "shared libpython" if mapped else "libpython in the executable"
    except OSError:
        linkage = "libpython linkage unknown"
    return f"CPython {platform.python_version()} ({sys.base_prefix}, {linkage})"


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = proc.children(recursive=True)  # below GNU time: the measured command and workers
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue  # a worker that just exited
    return total


class _TreePoller(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._proc = psutil.Process(pid)
        self._done = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _tree_rss(self._proc))
            self._done.wait(POLL_S)

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_measured(
    cmd: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    stdout_path: Path,
    kill_when: Callable[[], bool] | None = None,
) -> ProcessFigures:
    """Run `cmd` to completion; never raises on a non-zero exit (the caller reports it).

    `kill_when`, asked every 0.2 s: once it says so, the command and every process it
    started get SIGKILL (a crash at that instant)."""
    stderr_path = stdout_path.with_suffix(".stderr")
    rss_path = stdout_path.with_suffix(".maxrss")
    timed = [GNU_TIME, "-f", "%M %U %S", "-o", str(rss_path), *cmd]
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            timed, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd,
            start_new_session=kill_when is not None,
        )  # fmt: skip
        poller = _TreePoller(proc.pid)
        poller.start()
        code = _wait(proc, kill_when)
        seconds = time.monotonic() - started
        poller.stop()
    peak, cpu = _gnu_time(rss_path)
    return ProcessFigures(
        seconds=seconds,
        exit_code=code,
        peak_rss_bytes=peak,
        peak_tree_rss_bytes=max(poller.peak, peak),
        cpu_seconds=cpu,
        stdout=stdout_path.read_text(errors="replace"),
        stderr=stderr_path.read_text(errors="replace"),
    )


def _wait(proc: subprocess.Popen[bytes], kill_when: Callable[[], bool] | None) -> int:
    if kill_when is None:
        return proc.wait()
    while proc.poll() is None:
        if kill_when():
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()  # the measured command and its workers, not GNU time
            return proc.wait()
        time.sleep(0.2)
    return int(proc.returncode)


def _gnu_time(path: Path) -> tuple[int, float]:
    """(peak RSS bytes, CPU seconds) from GNU time's `%M %U %S` line, its last line (a failed
    command adds a status line before it)."""
    fields = path.read_text().splitlines()[-1].split() if path.read_text().strip() else []
    if len(fields) != 3:
        return 0, 0.0
    return int(fields[0]) * 1024, float(fields[1]) + float(fields[2])


def load_1min() -> float:
    return os.getloadavg()[0]


def idle_core_seconds() -> float:
    """Core-seconds all the machine's cores have spent idle (idle + iowait) since boot, as
    psutil reads them (/proc/stat on Linux). The difference over a line is what the line
    left of the machine's cores: the servers share them, so a line is bound by (client CPU +
    servers CPU) / cores, and its idle core-seconds say how far it stands from that bound."""
    times = psutil.cpu_times()
    return float(times.idle + getattr(times, "iowait", 0.0))

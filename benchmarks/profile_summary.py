"""Summarise a py-spy raw profile (collapsed stacks) of a bascule line: where the time goes.

Usage: python -m benchmarks.profile_summary PY-SPY.txt [--rate 200] [--top 15]

Samples are split by role: start-up (imports, config, before `migrate`), the coordinator
(the main thread inside `migrate`), and the part tasks (worker threads). For each role: the
seconds sampled, the functions that include the most samples (inclusive), and the leaf
functions (self). py-spy counts a thread only while it is active (not idle in a wait).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.+?) \((?P<where>[^()]*)\)$")


def _frames(stack: str) -> list[str]:
    """'fn (file:line)' frames -> 'file:fn', outermost first (line numbers dropped)."""
    out = []
    for raw in stack.split(";")[1:]:  # the first item names the process
        m = _FRAME.match(raw)
        if m is None:
            out.append(raw)
            continue
        path = m.group("where").rsplit(":", 1)[0]
        out.append(f"{path}:{m.group('fn')}")
    return out


def _role(frames: list[str]) -> str:
    if any("Thread._bootstrap" in f or "_bootstrap" in f.split(":")[-1] for f in frames[:2]):
        return "part tasks (worker threads)"
    if any(f.endswith(":migrate") and "service.py" in f for f in frames):
        return "coordinator (main thread)"
    return "start-up (imports, config)"


def summarise(path: Path, rate: int, top: int) -> str:
    inclusive: dict[str, Counter[str]] = {}
    leaf: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not count_s.isdigit():
            continue
        frames, count = _frames(stack), int(count_s)
        role = _role(frames)
        inc = inclusive.setdefault(role, Counter())
        for f in set(frames):
            inc[f] += count
        inc["<total>"] += count
        if frames:
            leaf.setdefault(role, Counter())[frames[-1]] += count
    lines = [f"profile {path} ({rate} samples/s)"]
    for role, inc in sorted(inclusive.items(), key=lambda kv: -kv[1]["<total>"]):
        total = inc["<total>"]
        lines.append(f"\n== {role}: {total / rate:.2f} s sampled")
        lines.append("   inclusive:")
        for fn, n in inc.most_common(top + 1):
            if fn != "<total>":
                lines.append(f"   {n / rate:7.2f} s {100 * n / total:5.1f}%  {fn}")
        lines.append("   self (leaf):")
        for fn, n in leaf[role].most_common(top):
            lines.append(f"   {n / rate:7.2f} s {100 * n / total:5.1f}%  {fn}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_summary")
    p.add_argument("profile", type=Path)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    sys.stdout.write(summarise(args.profile, args.rate, args.top) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

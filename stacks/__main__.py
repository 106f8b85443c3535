"""Pulumi program: the landing zone of the selected stack (see Pulumi.<stack>.yaml)."""

from __future__ import annotations

from pathlib import Path

from bascule.stacks.program import main

main(Path(__file__).resolve().parent.parent)

"""The smoke step reads the target back and holds it against the journal's checksums, not
only against the source: a target byte flipped after the copy fails it even when the source
was damaged the same way (so the two still agree). Local folders, the engine called
directly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bascule.runbook import engine
from bascule.runbook.context import FAILED, PASSED, RunOptions
from tests.unit.test_runbook_engine import Site

SMOKE: list[dict[str, Any]] = [
    {"name": "switch", "kind": "switch", "to": "target"},
    {"name": "smoke", "kind": "smoke", "sample": 3},
]
FORCED = RunOptions(who="tester", force_reason="test")


@pytest.fixture()
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def _flip(path: Path, keep_mtime: bool = False) -> None:
    st = path.stat()
    body = bytearray(path.read_bytes())
    body[0] ^= 0x01
    path.write_bytes(bytes(body))
    if keep_mtime:  # the source's etag (from stat) stays: it does not look changed
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_then_smoke(site: Site, damage: list[tuple[Path, bool]]) -> engine.RunbookOutcome:
    copied = engine.execute(site.cfg, site.runbook([{"name": "copy", "kind": "copy"}], name="c"),
                            FORCED)  # fmt: skip
    assert copied.ok
    for path, keep in damage:
        _flip(path, keep)
    return engine.execute(site.cfg, site.runbook(SMOKE, name="s"), FORCED)


def _smoke(out: engine.RunbookOutcome) -> tuple[str, str]:
    result = next(r for r in out.results if r.step.name == "smoke")
    return result.outcome, result.message


def test_smoke_passes_and_says_it_checked_the_journal(site: Site) -> None:
    outcome, message = _smoke(_copy_then_smoke(site, []))
    assert outcome == PASSED, message
    assert "3 of them, the journal's checksums" in message


def test_smoke_fails_on_a_target_byte_the_journal_did_not_record(site: Site) -> None:
    target = site.tmp / "dst" / "b" / "out" / "a.csv"
    source = site.source / "in" / "a.csv"
    # The same byte flipped on both sides: source and target agree, the journal does not.
    outcome, message = _smoke(_copy_then_smoke(site, [(target, False), (source, True)]))
    assert outcome == FAILED
    assert "ds:out/a.csv: plaintext" in message
    assert "is not the journal's" in message
    assert "differs from the source" not in message


def test_smoke_fails_on_a_flipped_target_byte(site: Site) -> None:
    target = site.tmp / "dst" / "b" / "out" / "sub" / "c.bin"
    outcome, message = _smoke(_copy_then_smoke(site, [(target, False)]))
    assert outcome == FAILED
    assert "ds:out/sub/c.bin differs from the source" in message
    assert "ds:out/sub/c.bin: plaintext" in message

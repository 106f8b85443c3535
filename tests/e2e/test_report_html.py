"""The HTML readiness report in headless Chromium: it renders non-blank, shows the readiness
table and two SVG charts, and makes no network request.

The journal comes from real rehearsals (local folders as both sides, so no server is needed):
one that passes and one whose verify step fails on an injected corruption."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

# Two rehearsals through the CLI, then a browser: about 10 s of CPU.
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RUNBOOK = """\
runbook: report
phases:
  - name: copy
    steps:
      - {name: copy, kind: copy}
      - {name: verify, kind: verify, level: full, rows: true}
  - name: cutover
    steps:
      - {name: freeze, kind: freeze}
      - {name: gate, kind: gate, conditions: [no_verification_findings, no_source_drift]}
      - {name: switch, kind: switch, to: target}
      - {name: smoke, kind: smoke, sample: 2}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bascule.cli.app", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _project(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for name in ("dcir", "pmsi"):
        (src / name).mkdir(parents=True)
        (src / name / "a.csv").write_bytes(b"id\n" + b"1\n" * 5000)
        (src / name / "b.bin").write_bytes(os.urandom(300_000))
    (tmp_path / "dst").mkdir()
    data = {
        "project": "report-test",
        "deadline": "2099-01-31",
        "journal": "state/journal.db",
        "endpoints": {"src": {"kind": "local", "path": str(src)},
                      "dst": {"kind": "local", "path": str(tmp_path / "dst")}},
        "datasets": [{"name": n, "source": {"endpoint": "src", "prefix": f"{n}/"},
                      "target": {"endpoint": "dst", "prefix": f"{n}/"}, "encrypt": False}
                     for n in ("dcir", "pmsi")],
        "switchover": {"production_volume": "450TB", "workers": 8, "freeze_window": "8h"},
    }  # fmt: skip
    config = tmp_path / "bascule.yaml"
    config.write_text(yaml.safe_dump(data))
    book = tmp_path / "report.yaml"
    book.write_text(RUNBOOK)
    assert _cli("runbook", "rehearse", str(book), "-c", str(config)).returncode == 0
    # A second rehearsal where a shell step corrupts a rehearsal copy: verify fails.
    corrupt = RUNBOOK.replace(
        "      - {name: verify,",
        "      - {name: corrupt, kind: shell, command: 'printf x >> "
        f"{tmp_path}/dst/rehearsal/$BASCULE_REHEARSAL_ID/pmsi/b.bin'}}\n      - {{name: verify,",
    )
    book.write_text(corrupt)
    done = _cli("runbook", "rehearse", str(book), "-c", str(config))
    assert done.returncode == 1, done.stdout + done.stderr
    return config


BROWSER_SERVICES = re.compile(
    r"^https?://[^/]*(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)/"
)


def _page_urls(log: str) -> list[str]:
    urls = set(re.findall(r"(?:https?|wss?|ftp)://[^\s\"')]+", log))
    return sorted(u for u in urls if not BROWSER_SERVICES.match(u))


def _png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and raw scanlines of an 8-bit RGB(A) PNG (filter bytes included)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_report_renders_in_headless_chromium_without_network(tmp_path: Path) -> None:
    assert CHROMIUM, "Debian's chromium is missing: run scripts/system-deps.sh"
    config = _project(tmp_path)
    report = tmp_path / "out" / "readiness.html"
    done = _cli("report", "-c", str(config), "--html", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(report.resolve()) in done.stdout
    html = report.read_text()
    assert "default-src 'none'" in html  # CSP: the browser may fetch nothing
    assert not re.search(r"https?://", html), "the report must not name any URL"
    assert not re.search(r"<(script|link|img|iframe)\b", html, re.I)
    # The target is named from the config, never a hard-coded provider.
    assert 'from local folder (src) to\n<strong id="target">local folder (dst)</strong>' in html

    profile = tmp_path / "profile"
    flags = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr",
             "--v=1"]  # fmt: skip
    url = report.resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="readiness">' in dom.stdout
    assert dom.stdout.count("<svg") >= 2
    assert 'id="throughput-chart"' in dom.stdout and 'id="phases-chart"' in dom.stdout
    assert "Not ready" in dom.stdout  # pmsi: the last rehearsal's verify failed on it
    assert "dcir" in dom.stdout and "days to the deadline" in dom.stdout
    # No request from the page: Chromium's verbose log names the URLs it loads (its own
    # update and account services aside, which run whatever the page is).
    assert not _page_urls(dom.stderr), f"network requests: {_page_urls(dom.stderr)[:5]}"
    # Control: the same check sees a page that does fetch something.
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://127.0.0.1:9/canary.png"></body></html>')
    seen = subprocess.run([*flags, "--dump-dom", control.as_uri()], capture_output=True,
                          text=True, timeout=90)  # fmt: skip
    assert any("127.0.0.1:9/canary.png" in u for u in _page_urls(seen.stderr)), seen.stderr[-800:]

    shot = tmp_path / "shot.png"
    done_shot = subprocess.run(
        [*flags, "--window-size=1200,1600", f"--screenshot={shot}", url],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done_shot.returncode == 0 and shot.exists(), done_shot.stderr[-2000:]
    width, height, raw = _png_pixels(shot)
    assert (width, height) == (1200, 1600)
    distinct = len(set(raw[i : i + 3] for i in range(0, min(len(raw), 3_000_000), 997)))
    assert distinct > 20, "the screenshot looks blank"

"""`bascule status [--json]` and `bascule report --html FILE`: readiness for project managers.

Both read the journal only (no storage access), so they answer in a second even when the
endpoints are unreachable."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from bascule.cli.common import console, echo, handle_errors
from bascule.cli.migrate import CONFIG_OPT, human_bytes, human_duration
from bascule.cli.tables import dataset_table
from bascule.config import load_config
from bascule.readiness.model import CONDITIONAL, NOT_READY, READY, Readiness, compute_readiness

STYLE = {READY: "green", CONDITIONAL: "yellow", NOT_READY: "bold red"}


def _duration(seconds: float | None) -> str:
    return "unknown" if seconds is None else human_duration(seconds)


def summary_lines(r: Readiness) -> list[str]:
    """The short summary the demo prints: overall, per dataset, projection, countdown."""
    p = r.projection
    days = "no deadline set" if r.days_left is None else f"{r.days_left} days to {r.deadline}"
    rate = f"{human_bytes(p.measured_rate_bps)}/s" if p.measured_rate_bps else "not measured"
    counts: dict[str, int] = {}
    for d in r.datasets:
        counts[d.status] = counts.get(d.status, 0) + 1
    spread = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"readiness: {r.overall} ({spread}); {days}", f"target: {r.target}"]
    last = r.rehearsals[-1] if r.rehearsals else None
    if last:
        lines.append(
            f"last rehearsal: {last.rehearsal_id} {last.status} in {_duration(last.seconds)}"
        )
    volume = human_bytes(p.production_bytes) if p.production_bytes else "production volume unset"
    lines.append(
        f"throughput {rate}; full copy of {volume} with {p.workers} worker(s): "
        f"{_duration(p.full_copy_s)}; freeze window needed {_duration(p.freeze_window_needed_s)}"
        f" (target {_duration(p.freeze_window_target_s)})"
    )
    return lines


def _table(r: Readiness) -> Table:
    headers = ("dataset", "status", "reasons", "rehearsal verified", "copied", "verified")
    rows = [
        (
            d.name,
            Text(d.status, style=STYLE.get(d.status, "dim")),
            "\n".join(d.reasons),
            f"{d.rehearsal_objects} ({human_bytes(d.rehearsal_bytes)})",
            f"{d.objects_copied} ({human_bytes(d.bytes_copied)})",
            str(d.objects_verified),
        )
        for d in r.datasets
    ]
    return dataset_table(
        console, f"readiness of {r.project}", headers, rows, left=("status", "reasons")
    )


def status_command(
    config: Path = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the readiness as JSON."),
) -> None:
    """Readiness per dataset (Ready / Conditionally ready / Not ready / Unknown), with reasons,
    projections and days to the deadline. Reads the journal only."""
    _status(config, as_json)


@handle_errors
def _status(config: Path, as_json: bool) -> None:
    r = compute_readiness(load_config(config, check_env=False))
    if as_json:
        echo(json.dumps(r.to_dict(), indent=2))
        return
    console.print(_table(r))
    for line in summary_lines(r):
        console.print(line, soft_wrap=True, markup=False)
    for b in r.blockers:
        console.print(f"blocks: {b}", soft_wrap=True, markup=False)


def report_command(
    config: Path = CONFIG_OPT,
    html: Path = typer.Option(..., "--html", help="Write the HTML report to this file."),
) -> None:
    """Write one self-contained HTML readiness report (no network access needed to view it)."""
    _report(config, html)


@handle_errors
def _report(config: Path, html: Path) -> None:
    from bascule.readiness.report import render_html

    r = compute_readiness(load_config(config, check_env=False))
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(render_html(r), encoding="utf-8")
    console.print(f"report: {html.resolve()}", soft_wrap=True, markup=False)
    for line in summary_lines(r):
        console.print(line, soft_wrap=True, markup=False)

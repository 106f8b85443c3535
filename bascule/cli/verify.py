"""`bascule verify`: checksums and row counts on both sides, a summary table, JSON evidence.

Exit codes: 0 when every object verified, 1 on any finding, 2 on a usage or config error
(e.g. full or --rows of an encrypted dataset without the identity), 3 when a side cannot be
listed.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from bascule.cli.common import console, handle_errors, setup_logging
from bascule.cli.migrate import (
    CONFIG_OPT,
    DATASET_OPT,
    EXECUTOR_OPT,
    RichProgress,
    human_bytes,
    make_progress,
    open_runner,
)
from bascule.cli.tables import dataset_table
from bascule.config import load_config
from bascule.errors import ExitCode
from bascule.verification.evidence import KINDS, ReportWriter, VerifyReport

_SHOWN_FINDINGS = 50


def verify_command(
    config: Path = CONFIG_OPT,
    dataset: str | None = DATASET_OPT,
    level: str = typer.Option(
        "quick", "--level", help="quick: no data read; full: re-read and decrypt both sides."
    ),
    rows: bool = typer.Option(False, "--rows", help="Also count rows on both sides."),
    sample: float | None = typer.Option(
        None, "--sample", help="Only a deterministic PERCENT of the objects (0 < P <= 100)."
    ),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON evidence here."),
    executor: str = EXECUTOR_OPT,
) -> None:
    """Check that every object arrived whole: exit 0 when all verified, 1 on any finding.

    Full and --rows of an encrypted dataset read the age identity file named by
    encryption.identity_file_env."""
    code = _verify(config, dataset, level, rows, sample, report, executor)
    if code:
        raise typer.Exit(int(code))


@handle_errors
def _verify(
    config: Path,
    dataset: str | None,
    level: str,
    rows: bool,
    sample: float | None,
    report_path: Path | None,
    executor: str,
) -> ExitCode:
    from bascule.verification.verify import verify

    cfg = load_config(config)
    setup_logging(cfg)
    if level not in ("quick", "full"):
        from bascule.errors import UsageError

        raise UsageError(f"--level {level!r}: use quick or full")
    runner = open_runner(executor, cfg, dataset)
    writer = ReportWriter(report_path) if report_path is not None else None
    try:
        with make_progress() as bar:
            result = verify(
                cfg, dataset, level="full" if level == "full" else "quick", rows=rows,
                sample=sample, runner=runner, progress=RichProgress(bar, "read"),
                on_record=writer.add if writer else None,
            )  # fmt: skip
        if writer is not None:
            writer.finish(result.summary)
    finally:
        runner.shutdown()
        if writer is not None:
            writer.discard()
    _print(result, report_path)
    return ExitCode.OK if result.ok else ExitCode.FAILED


def _table(result: VerifyReport) -> Table:
    """One row per dataset; a column per finding kind that occurred (all in --json)."""
    title = f"verify --level {result.level}" + (" --rows" if result.rows else "")
    datasets = result.summary["datasets"]
    kinds = [k for k in KINDS if any(row["findings"].get(k) for row in datasets.values())]
    rows = [
        (
            name,
            str(row["objects"]),
            str(row["verified"]),
            *(str(row["findings"].get(k, 0)) for k in kinds),
        )
        for name, row in datasets.items()
    ]
    return dataset_table(console, title, ("dataset", "objects", "verified", *kinds), rows)


def _print(result: VerifyReport, report_path: Path | None) -> None:
    console.print(_table(result))
    for f in result.first_findings[:_SHOWN_FINDINGS]:
        console.print(f"{f.kind}: {f.message}", markup=False, soft_wrap=True)
        if f.source_value is not None or f.target_value is not None:
            console.print(
                f"    {f.what}: source/expected {f.source_value}, target {f.target_value}",
                markup=False,
                soft_wrap=True,
            )
    if result.finding_count > _SHOWN_FINDINGS:
        more = result.finding_count - _SHOWN_FINDINGS
        console.print(f"... and {more} more finding(s): see --report FILE for all of them")
    if result.sample is not None:
        s = result.sample
        console.print(
            f"sample: {s.percent:g}% of the objects, {s.objects_in_sample} of {s.objects_total}"
        )
    summary = result.summary
    status = "all verified" if result.ok else f"{result.finding_count} finding(s)"
    console.print(
        f"{summary['verified']}/{summary['objects']} objects verified, "
        f"{human_bytes(result.bytes_read)} read in {result.seconds:.1f}s: {status}"
    )
    if report_path is not None:
        console.print(f"evidence written to {report_path}", markup=False)

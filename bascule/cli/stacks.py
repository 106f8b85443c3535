"""`bascule stacks` commands: parity, policy and endpoints of the Pulumi landing zones.

Every command runs the stack programs in-process under Pulumi's mocks: no Pulumi CLI, no
cloud credentials. Exit 1 on a gap or a violation, 2 on a config error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.table import Table
from rich.text import Text

from bascule.cli.common import console, echo, err_console, handle_errors
from bascule.errors import ConfigError, ExitCode
from bascule.stacks.endpoints import endpoints_section, storage_names
from bascule.stacks.parity import ACCEPTED, EQUIVALENT, ParityReport, compare_runs
from bascule.stacks.policy import Violation, check_run
from bascule.stacks.project import load_stacks, pick_pairs, run_all

app = typer.Typer(help="stacks commands", no_args_is_help=True)

PROJECT_DIR = typer.Option(
    Path("."), "--project-dir", "-C", help="Directory holding Pulumi.yaml and the stack files."
)
STYLE = {EQUIVALENT: "green", ACCEPTED: "yellow"}


def _parity_table(report: ParityReport) -> Table:
    table = Table(title=f"parity {report.source_stack} -> {report.target_stack}")
    for column in ("element", "Azure", report.target_name, "status", "details"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        details = "\n".join(
            f"{d.message}" + (f" (accepted: {d.reason})" if d.accepted else "")
            for d in row.differences
        )
        source = Text.assemble(row.source, (f" ({len(row.source_resources)} resources)", "dim"))
        target = Text.assemble(row.target, (f" ({len(row.target_resources)} resources)", "dim"))
        status = Text(row.status, style=STYLE.get(row.status, "bold red"))
        table.add_row(row.element, source, target, status, details)
    return table


@app.command()
@handle_errors
def parity(
    project_dir: Path = PROJECT_DIR,
    source: str | None = typer.Option(
        None, "--source", help="Azure stack (default: the only one)."
    ),
    target: list[str] = typer.Option(
        [], "--target", help="Scaleway or OVHcloud stack(s) (default: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON."),
) -> None:
    """Compare the Azure landing zone with each target one (Scaleway, OVHcloud), element by
    element."""
    src, dst = pick_pairs(load_stacks(project_dir), source, target)
    runs = run_all([src, *dst])
    reports = [compare_runs(runs[src.stack], runs[d.stack]) for d in dst]
    if as_json:
        echo(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        for report in reports:
            console.print(_parity_table(report))
    failed = [r for r in reports if not r.ok]
    if failed:
        names = ", ".join(f"{r.source_stack} -> {r.target_stack}" for r in failed)
        err_console.print(
            f"error: parity gaps in {names}; fix the stack or accept the gap "
            "with a reason in the spec (accepted_gaps)",
            markup=False,
        )
        raise typer.Exit(int(ExitCode.FAILED))


def _policy_table(violations: list[Violation]) -> Table:
    table = Table(title="policy violations")
    for column in ("stack", "resource", "rule", "problem", "fix"):
        table.add_column(column, overflow="fold")
    for v in violations:
        resource = Text.assemble(v.resource, "\n", (v.type, "dim"))
        table.add_row(v.stack, resource, v.rule, v.message, v.fix)
    return table


@app.command()
@handle_errors
def policy(
    project_dir: Path = PROJECT_DIR,
    stack: list[str] = typer.Option([], "--stack", "-s", help="Stack(s) to check (default: all)."),
) -> None:
    """Check every declared resource: France only, encryption, private, TLS 1.2, HDS, raw data."""
    stacks = load_stacks(project_dir, stack)
    runs = run_all(stacks)
    violations = [v for s in stacks for v in check_run(runs[s.stack])]
    if violations:
        console.print(_policy_table(violations))
        err_console.print(
            f"error: {len(violations)} policy violation(s); apply the fixes above", markup=False
        )
        raise typer.Exit(int(ExitCode.FAILED))
    counted = sum(len(r.resources) for r in runs.values())
    console.print(f"policy: {counted} resources in {len(stacks)} stack(s) comply", markup=False)


def _read_outputs(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not JSON ({exc.msg}); use `pulumi stack output --json`"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of stack outputs")
    return data


@app.command()
@handle_errors
def endpoints(
    outputs: list[Path] = typer.Argument(
        None, help="Files from `pulumi stack output --json -s <stack>` (default: mock runs)."
    ),
    project_dir: Path = PROJECT_DIR,
) -> None:
    """Print the bascule.yaml `endpoints:` section for the stacks (secrets as env var names)."""
    if outputs:
        by_source = {str(p): _read_outputs(p) for p in outputs}
    else:
        runs = run_all(load_stacks(project_dir))
        by_source = {f"Pulumi.{name}.yaml": dict(run.outputs) for name, run in runs.items()}
    section = endpoints_section(by_source)
    lines = ["# generated by `bascule stacks endpoints`; storage names per stack:"]
    for out in by_source.values():
        names = ", ".join(f"{k}={v}" for k, v in storage_names(out).items())
        lines.append(f"#   {out.get('endpointName')}: {names}")
    echo("\n".join(lines))
    echo(yaml.safe_dump(section, sort_keys=False).rstrip())

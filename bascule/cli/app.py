"""The `bascule` command line: the only place that prints.

Sub-command groups live in one module each in `bascule/cli/`; this module wires them together and
maps errors to the documented exit codes (see `bascule.errors.ExitCode`).
"""

from __future__ import annotations

import typer

from bascule import __version__
from bascule.cli import evidence as cli_evidence
from bascule.cli import keys as cli_keys
from bascule.cli import migrate as cli_migrate
from bascule.cli import runbook as cli_runbook
from bascule.cli import sandbox as cli_sandbox
from bascule.cli import stacks as cli_stacks
from bascule.cli import status as cli_status
from bascule.cli import verify as cli_verify
from bascule.cli.common import set_debug, set_verbose, tune_allocator, tune_gc

app = typer.Typer(
    name="bascule",
    help=(
        "Rehearse and carry out the switchover of a health-data platform from Azure Blob "
        "to S3-compatible sovereign hosting: encrypted (age), chunked, resumable, verified.\n\n"
        "Exit codes: 0 success; 1 verification mismatch or failed gate; 2 usage or config "
        "error; 3 storage, credential or network error; 4 interrupted (run again to resume)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("plan")(cli_migrate.plan_command)
app.command("migrate")(cli_migrate.migrate_command)
app.command("verify")(cli_verify.verify_command)
app.add_typer(cli_sandbox.app, name="sandbox", help="Local Azurite + S3 servers on 127.0.0.1.")
app.add_typer(cli_keys.app, name="keys", help="Generate and check age keys.")
app.add_typer(cli_stacks.app, name="stacks", help="Pulumi landing zones: parity and policy.")
app.add_typer(cli_runbook.app, name="runbook", help="Rehearse, execute or roll back a runbook.")
app.add_typer(cli_evidence.app, name="evidence", help="Signed evidence packs for auditors.")
app.command("status")(cli_status.status_command)
app.command("report")(cli_status.report_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bascule {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks instead of one line; log every object to the file."
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Also print the event log on stderr (it always goes "
        "to the JSON log file beside the journal).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    set_debug(debug)
    set_verbose(verbose)


def main() -> None:
    tune_allocator()
    tune_gc()
    app()


if __name__ == "__main__":
    main()

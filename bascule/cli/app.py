"""The `bascule` command line: the only place that prints.

Sub-command groups live in one module each in `bascule/cli/`; this module wires them together and
maps errors to the documented exit codes (see `bascule.errors.ExitCode`).

Start-up: `main` imports only the module of the command it runs (all of them for `--help` or
an unknown command), so `bascule migrate` does not load Pulumi, the evidence pack or the
sandbox (they cost about 0.4 s of CPU at every start). `app`, the whole command line, is
built when first asked for (tests, `--help`).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from bascule import __version__
from bascule.cli import early
from bascule.tuning import tune_allocator, tune_gc

HELP = (
    "Rehearse and carry out the switchover of a health-data platform from Azure Blob "
    "to S3-compatible sovereign hosting: encrypted (age), chunked, resumable, verified.\n\n"
    "Exit codes: 0 success; 1 verification mismatch or failed gate; 2 usage or config "
    "error; 3 storage, credential or network error; 4 interrupted (run again to resume)."
)
# name -> (module, attribute, help of a group; None for a single command), in --help order
COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "plan": ("bascule.cli.migrate", "plan_command", None),
    "migrate": ("bascule.cli.migrate", "migrate_command", None),
    "verify": ("bascule.cli.verify", "verify_command", None),
    "sandbox": ("bascule.cli.sandbox", "app", "Local Azurite + S3 servers on 127.0.0.1."),
    "keys": ("bascule.cli.keys", "app", "Generate and check age keys."),
    "stacks": ("bascule.cli.stacks", "app", "Pulumi landing zones: parity and policy."),
    "runbook": ("bascule.cli.runbook", "app", "Rehearse, execute or roll back a runbook."),
    "evidence": ("bascule.cli.evidence", "app", "Signed evidence packs for auditors."),
    "status": ("bascule.cli.status", "status_command", None),
    "report": ("bascule.cli.status", "report_command", None),
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bascule {__version__}")
        raise typer.Exit()


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
    from bascule.cli.common import set_debug, set_verbose

    set_debug(debug)
    set_verbose(verbose)


def build_app(only: str | None = None) -> typer.Typer:
    """The command line with every command, or with `only` that one (same behaviour)."""
    cli = typer.Typer(
        name="bascule",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    cli.callback()(_root)
    for name, (module, attribute, group_help) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if group_help is None:
            cli.command(name)(target)
        else:
            cli.add_typer(target, name=name, help=group_help)
    return cli


def invoked_command(args: list[str]) -> str | None:
    """The command `args` runs (the root's options are flags: the first other word), or None
    when it is not one of ours (help, a typo: then the whole command line answers)."""
    word = next((a for a in args if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole command line, built on first use
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(name)


def main() -> None:
    tune_allocator()
    command = invoked_command(sys.argv[1:])
    early.start_for(command, sys.argv[1:])  # before the command's imports (cli/early.py)
    cli = build_app(command)
    tune_gc()  # after the command's imports: they are start-up objects too
    try:
        cli()
    except SystemExit as done:
        leave(done.code)
    leave(0)


def leave(code: object) -> None:
    """Exit with `code` once the exit handlers have run and every stream is flushed, without
    tearing down the interpreter object by object (0.3 CPU s after a copy: every module,
    class and cached client freed one at a time, for a process that is ending). Nothing is
    lost: the journal commits as it goes, and files are closed by the command that opened
    them. Worker threads still running (none after a command returns) are not waited for."""
    import atexit
    import logging
    import os

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1  # a closed pipe: the output did not all arrive
    os._exit(code or 0)


if __name__ == "__main__":
    main()

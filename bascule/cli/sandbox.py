"""`bascule sandbox up|down|status|seed`: local Azurite + `rclone serve s3` on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bascule.cli.common import console, echo, handle_errors
from bascule.config import parse_size
from bascule.errors import UsageError
from bascule.logging import configure_logging, get_logger, is_configured, register_secret
from bascule.sandbox import control
from bascule.sandbox.seed import (
    DEFAULT_PART_SIZE,
    SOURCE_CONTAINER,
    SeededObject,
    SeedOptions,
    build_objects,
    summarise,
)

app = typer.Typer(help="sandbox commands", no_args_is_help=True)

StateDir = Annotated[
    Path,
    typer.Option("--state-dir", help="Where the sandbox keeps its data, keys and pids."),
]


def _paths(state_dir: Path) -> control.SandboxPaths:
    if not is_configured():
        configure_logging(console_level="warning")
    paths = control.SandboxPaths.at(state_dir)
    state = control.load_state(paths)
    if state is not None:
        for value in (state.connection_string, state.access_key_id, state.secret_access_key):
            register_secret(value)
    return paths


@app.command("up")
@handle_errors
def up(
    state_dir: StateDir = control.DEFAULT_STATE_DIR,
    azure_port: Annotated[
        int, typer.Option("--azure-port", help="Azurite blob port on 127.0.0.1.")
    ] = control.DEFAULT_AZURE_PORT,
    s3_port: Annotated[
        int, typer.Option("--s3-port", help="rclone serve s3 port on 127.0.0.1.")
    ] = control.DEFAULT_S3_PORT,
    use_tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="Serve HTTPS with certificates from a local CA (made in the state "
            "directory); the written bascule.yaml trusts it through ca_bundle.",
        ),
    ] = False,
) -> None:
    """Start Azurite and rclone serve s3; write sandbox.json, env.sh, bascule.yaml.

    Starts only what is not running yet; a running server keeps its port."""
    paths = _paths(state_dir)
    result = control.up(paths, azure_port=azure_port, s3_port=s3_port, use_tls=use_tls)
    register_secret(result.state.secret_access_key)
    register_secret(result.state.access_key_id)
    get_logger("bascule.sandbox").info(
        "sandbox.up", started=result.started, pids=result.state.pids, state_dir=str(paths.root)
    )
    urls = {control.AZURE: result.state.account_url, control.S3: result.state.s3_endpoint_url}
    for name in result.started:
        console.print(f"started {name} (pid {result.state.pids[name]}) on {urls[name]}")
    for name in result.already_running:
        console.print(f"{name} already running (pid {result.state.pids[name]}) on {urls[name]}")
    console.print(f"state:   {paths.state_file} (mode 0600)", soft_wrap=True)
    console.print(f"config:  {paths.example_config}", soft_wrap=True)
    if result.state.ca_bundle:
        console.print(f"CA:      {result.state.ca_bundle} (HTTPS)", soft_wrap=True)
    console.print(f"secrets: source {paths.env_file}", soft_wrap=True)


@app.command("down")
@handle_errors
def down(state_dir: StateDir = control.DEFAULT_STATE_DIR) -> None:
    """Stop the servers `up` started here (by pid, if they are still ours), nothing else."""
    paths = _paths(state_dir)
    result = control.down(paths)
    get_logger("bascule.sandbox").info("sandbox.down", stopped=result.stopped)
    for name in result.stopped:
        console.print(f"stopped {name}")
    for name in result.already_gone:
        console.print(f"{name} was not running")
    for name, pid in result.left_alone:
        console.print(f"pid {pid} recorded for {name} now runs something else: left alone")
    if not (result.stopped or result.already_gone or result.left_alone):
        console.print(f"nothing to stop in {paths.root}", soft_wrap=True)


@app.command("status")
@handle_errors
def status(
    state_dir: StateDir = control.DEFAULT_STATE_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Say which sandbox server runs (pid) and whether it answers on its port."""
    paths = _paths(state_dir)
    services = control.status(paths)
    if as_json:
        payload = {
            s.name: {"pid": s.pid, "url": s.url, "running": s.running, "answers": s.answers}
            for s in services
        }
        echo(json.dumps({"state_dir": str(paths.root), "services": payload}, indent=2))
        return
    if not services:
        console.print(f"no sandbox in {paths.root}; run `bascule sandbox up`", soft_wrap=True)
        return
    for s in services:
        run = f"running (pid {s.pid})" if s.running else "not running"
        answer = "answers" if s.answers else "does not answer"
        console.print(f"{s.name:10} {run:22} {s.url:40} {answer}", soft_wrap=True)


def _parse_part_size(value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(f"--part-size: {exc}") from None


@app.command("seed")
@handle_errors
def seed(
    state_dir: StateDir = control.DEFAULT_STATE_DIR,
    scale: Annotated[
        float, typer.Option("--scale", help="Multiplies rows and binary sizes (0.01 is tiny).")
    ] = 1.0,
    seed_value: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 1,
    part_size: Annotated[
        str, typer.Option("--part-size", help="Edge objects sit on this part size.")
    ] = f"{DEFAULT_PART_SIZE // (1024 * 1024)}MiB",
) -> None:
    """Write deterministic SNDS-shaped data into Azurite (container snds).

    Same --seed, same bytes; a manifest (key, size, MD5) goes beside sandbox.json."""
    # Imported here: the Azure SDK is slow to import and only `seed` needs it.
    from bascule.sandbox.azure_upload import upload_objects

    paths = _paths(state_dir)
    if scale <= 0:
        raise UsageError(f"--scale must be positive, got {scale}")
    options = SeedOptions(seed=seed_value, scale=scale, part_size=_parse_part_size(part_size))
    state = _running_state(paths)
    with console.status("seeding...") as progress:

        def shown(obj: SeededObject) -> None:
            progress.update(f"seeding... {obj.key}")

        ca_bundle = str(state.ca_bundle) if state.ca_bundle else None
        written = upload_objects(
            state.connection_string, SOURCE_CONTAINER, build_objects(options), shown, ca_bundle
        )
    manifest = {
        "container": SOURCE_CONTAINER,
        "seed": options.seed,
        "scale": options.scale,
        "part_size": options.part_size,
        "objects": [o.to_dict() for o in written],
    }
    paths.manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    get_logger("bascule.sandbox").info("sandbox.seed", objects=len(written), seed=options.seed)
    _print_summary(written, paths)


def _running_state(paths: control.SandboxPaths) -> control.SandboxState:
    state = control.load_state(paths)
    azurite = [s for s in control.status(paths) if s.name == control.AZURE]
    if state is None or not azurite or not (azurite[0].running and azurite[0].answers):
        raise UsageError(
            f"the sandbox in {paths.root} is not running; "
            f"run `bascule sandbox up --state-dir {paths.root}` first"
        )
    return state


def _print_summary(written: list[SeededObject], paths: control.SandboxPaths) -> None:
    table = Table(title=f"seeded az://{SOURCE_CONTAINER}")
    table.add_column("dataset")
    table.add_column("objects", justify="right")
    table.add_column("bytes", justify="right")
    for group, (count, size) in summarise(written).items():
        table.add_row(group, str(count), f"{size:,}")
    total = sum(o.size for o in written)
    table.add_row("total", str(len(written)), f"{total:,}", style="bold")
    console.print(table)
    console.print(f"manifest: {paths.manifest}", soft_wrap=True)

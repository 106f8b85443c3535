"""`bascule keys` commands: make and check age keys.

`generate` writes a new X25519 identity to a 0600 file and prints only its recipient (the
public key to put under ``encryption.recipients``). `check` validates recipients and
identity files and says which one is bad. Secrets are never printed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from bascule.age.keys import shown_key
from bascule.age.stream import (
    X25519Identity,
    X25519Recipient,
    load_identities,
    write_identity_file,
)
from bascule.cli.common import console, err_console, handle_errors
from bascule.errors import ConfigError

IDENTITY_ENV = "BASCULE_AGE_IDENTITY"

app = typer.Typer(help="keys commands", no_args_is_help=True)


@app.command("generate")
@handle_errors
def generate(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            envvar=IDENTITY_ENV,
            help=f"Identity file to create (mode 0600); default: ${IDENTITY_ENV}.",
        ),
    ],
) -> None:
    """Create an age identity file and print its recipient (public key) on stdout."""
    if output.exists() or output.is_symlink():
        raise ConfigError(
            f"{output} already exists; an identity is never overwritten: "
            "choose another --output or move the old file away"
        )
    if not output.parent.is_dir():
        raise ConfigError(f"directory {output.parent} does not exist; create it first")
    identity = X25519Identity.generate()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    write_identity_file(output, identity, created)
    err_console.print(
        f"identity written to {output} (mode 0600); public key:", markup=False, soft_wrap=True
    )
    console.print(str(identity.recipient()), markup=False, soft_wrap=True)


@app.command("check")
@handle_errors
def check(
    recipient: Annotated[
        list[str] | None,
        typer.Option("--recipient", "-r", help="An age recipient (age1...); repeatable."),
    ] = None,
    identity_file: Annotated[
        list[Path] | None,
        typer.Option("--identity-file", "-i", help="An age identity file; repeatable."),
    ] = None,
) -> None:
    """Validate recipients and identity files; exit 2 naming each bad one."""
    recipient = recipient or []
    identity_file = identity_file or []
    if not recipient and not identity_file:
        raise ConfigError("nothing to check: give --recipient age1... and/or --identity-file F")
    problems = []
    for index, value in enumerate(recipient, start=1):
        try:
            parsed = X25519Recipient.parse(value)
        except ValueError as exc:
            problems.append(f"recipient {index} ({shown_key(value)}) is invalid: {exc}")
            continue
        console.print(f"ok  recipient {index}: {parsed}", markup=False, soft_wrap=True)
    for path in identity_file:
        try:
            identities = load_identities(path)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        publics = ", ".join(str(i.recipient()) for i in identities)
        console.print(
            f"ok  identity file {path}: public key {publics}", markup=False, soft_wrap=True
        )
    if problems:
        raise ConfigError("; ".join(problems))

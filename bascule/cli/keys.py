"""`bascule keys` commands: make and check age keys.

`generate` writes a new X25519 identity to a 0600 file and prints only its recipient (the
public key to put under ``encryption.recipients``). `check` validates recipients and
identity files and says which one is bad. Secrets are never printed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from bascule.migration.rotation import RotationOutcome

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


REVOCATION_NOTE = (
    "note: removing a recipient does not revoke a file key it may already have seen (a "
    "copy of an old header or object still opens with it); for real revocation run again "
    "with --rekey (new file key and nonce, every byte re-encrypted)"
)


@app.command("rotate")
@handle_errors
def rotate(
    config: Annotated[Path, typer.Option("--config", "-c", help="The bascule.yaml to use.")] = Path(
        "bascule.yaml"
    ),
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Only this dataset (default: all).")
    ] = None,
    add_recipient: Annotated[
        list[str] | None,
        typer.Option("--add-recipient", help="A recipient (age1...) to add; repeatable."),
    ] = None,
    remove_recipient: Annotated[
        list[str] | None,
        typer.Option("--remove-recipient", help="A recipient (age1...) to remove; repeatable."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be rewritten; write nothing.")
    ] = False,
    rekey: Annotated[
        bool,
        typer.Option("--rekey", help="Re-encrypt with a new file key and nonce (revocation)."),
    ] = False,
) -> None:
    """Re-wrap the file key of every copied object for a new recipient set, on the target.

    Server-side where the target allows it (S3 UploadPartCopy: the client sends one minimum
    part per object); otherwise each object is written again. Journaled and resumable."""
    from bascule.cli.common import setup_logging
    from bascule.config import load_config
    from bascule.migration.rotation import RotationRequest
    from bascule.migration.rotation import rotate as run_rotation

    cfg = load_config(config)
    request = RotationRequest(
        tuple(add_recipient or ()), tuple(remove_recipient or ()), dataset, rekey
    )
    if not dry_run:
        setup_logging(cfg)
    outcome = run_rotation(cfg, request, dry_run=dry_run)
    _rotation_report(outcome)
    if outcome.plan.changed:
        raise typer.Exit(1)


def _say(text: str) -> None:
    console.print(text, markup=False, soft_wrap=True)


def _rotation_report(outcome: RotationOutcome) -> None:
    from bascule.cli.migrate import human_bytes as hb

    plan = outcome.plan
    for value in plan.change.absent:
        _say(f"note: {value} was not in encryption.recipients")
    _say("new recipients: " + ", ".join(str(r) for r in plan.change.new))
    if outcome.dry_run:
        for w in plan.work:
            where = f"{w.dataset}:{w.row.target_key}"
            _say(f"would rotate {where} by {w.path}: send {hb(w.bytes_sent)}, "
                 f"copy {hb(w.bytes_copied)} server-side")  # fmt: skip
    if outcome.finished_after_crash or outcome.restarted:
        _say(f"resumed: {outcome.finished_after_crash} commit(s) finished, "
             f"{outcome.restarted} interrupted rotation(s) done again")  # fmt: skip
    for url in outcome.copy_refused:
        _say(f"{url} refused server-side copy (UploadPartCopy): its objects were rewritten whole")
    if outcome.orphans_aborted:
        _say(f"aborted {outcome.orphans_aborted} orphaned upload(s)")
    for r in outcome.rotated:
        _say(f"rotated {r.dataset}:{r.target_key} by {r.path}: sent {hb(r.bytes_sent)}, "
             f"copied {hb(r.bytes_copied)} server-side")  # fmt: skip
    done = plan.work if outcome.dry_run else outcome.rotated
    verb = "would rotate" if outcome.dry_run else "rotated"
    sent, copied = sum(d.bytes_sent for d in done), sum(d.bytes_copied for d in done)
    _say(f"{verb} {len(done)} object(s): {hb(sent)} sent, {hb(copied)} copied server-side; "
         f"{plan.current} already rotated to these recipients")  # fmt: skip
    for key in plan.changed:
        _say(f"left alone (differs from the journal; run `bascule verify`): {key}")
    for key in plan.unknown[:20]:
        _say(f"left alone (not copied by bascule): {key}")
    if outcome.dry_run:
        _say("dry run: nothing was written")
    if plan.mode != "rekey":
        _say(REVOCATION_NOTE)
    _say("the config is not changed: set encryption.recipients to the new recipients yourself, "
         "so that `migrate` encrypts new objects for them")  # fmt: skip

"""`bascule evidence keygen|pack|check`: a signed, tamper-evident pack per switchover.

Exit codes: 0 done / the pack checks out; 1 the pack is broken (the first broken item is
named) or the object is not in it; 2 bad arguments, config, key or journal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bascule.cli.common import console, err_console, handle_errors, setup_logging
from bascule.cli.migrate import CONFIG_OPT
from bascule.config import Config, load_config
from bascule.errors import ExitCode, JournalError, RunbookError, UsageError
from bascule.migration.service import open_journal
from bascule.verification import pack_facts
from bascule.verification.pack import PackRequest, write_pack
from bascule.verification.pack_html import render_summary
from bascule.verification.seal import (
    check_pack,
    load_private_key,
    load_public_key,
    proof_holds,
    prove,
    write_keypair,
)

KEY_ENV = "BASCULE_EVIDENCE_KEY"
app = typer.Typer(help="evidence commands", no_args_is_help=True)


@app.command("keygen")
@handle_errors
def keygen(
    private: Annotated[Path, typer.Option("--private-key", help="Signing key to create "
                                          "(mode 0600).")] = Path("evidence_ed25519"),
    public: Annotated[Path | None, typer.Option("--public-key", help="Public key to create "
                                                "(default: PRIVATE.pub).")] = None,
) -> None:  # fmt: skip
    """Create the Ed25519 key pair that signs evidence packs; give auditors the public key."""
    public = public or private.with_name(private.name + ".pub")
    print_ = write_keypair(private, public)
    console.print(f"signing key: {private} (mode 0600; keep it offline)", markup=False)
    console.print(f"public key:  {public} (sha256 {print_})", markup=False, soft_wrap=True)


def _runbook_facts(cfg: Config, run_id: int | None) -> tuple[dict[str, str], Path | None]:
    """The approve steps' prompts and the stacks directory of the run's runbook, when the
    runbook file still has the run's content; ({}, None) otherwise."""
    journal = open_journal(cfg, create=False)
    if journal is None:
        raise JournalError(f"{cfg.journal}: no journal yet; run a runbook first")
    try:
        run = pack_facts.pick_run(journal, run_id)
    finally:
        journal.close()
    from bascule.runbook.schema import ApproveStep, CheckStep, load_runbook

    path = Path(run.runbook_path)
    try:
        book = load_runbook(path, [d.name for d in cfg.datasets])
    except RunbookError:
        return {}, None
    if book.sha256 != run.runbook_sha256:
        return {}, None
    steps = [s for _, s in book.steps()] + list(book.rollback)
    texts = {s.name: s.prompt for s in steps if isinstance(s, ApproveStep)}
    dirs = [s.stacks.project_dir for s in steps if isinstance(s, CheckStep) and s.stacks]
    return texts, (dirs[0] if dirs else None)


@app.command("pack")
@handle_errors
def pack(
    out: Annotated[Path, typer.Option("--output", "-o", help="Folder to create.")],
    config: Path = CONFIG_OPT,
    run: Annotated[int | None, typer.Option("--run", help="Run id (default: the last "
                                            "execute or rehearse run).")] = None,
    key: Annotated[Path, typer.Option("--key", envvar=KEY_ENV, help="Ed25519 signing key "
                                      f"(default: ${KEY_ENV}).")] = Path("evidence_ed25519"),
    stacks_dir: Annotated[Path | None, typer.Option("--stacks-dir", help="Pulumi project to "
                          "report on (default: the runbook's check step's).")] = None,
) -> None:  # fmt: skip
    """Write the evidence pack of a runbook run: manifest, steps, approvals, gates, stacks
    parity and policy, config, versions and an HTML summary, sealed and signed."""
    cfg = load_config(config, check_env=False)
    setup_logging(cfg)
    signing_key = load_private_key(key)
    texts, runbook_stacks = _runbook_facts(cfg, run)
    journal = open_journal(cfg, create=False)
    assert journal is not None
    try:
        request = PackRequest(cfg, out, signing_key, run, texts, stacks_dir or runbook_stacks)
        done = write_pack(journal, request, render_summary)
    finally:
        journal.close()
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(done.verdicts.items())) or "no object"
    console.print(f"evidence pack: {done.folder}", markup=False, soft_wrap=True)
    console.print(
        f"{done.run.command} run {done.run.id} ({done.run.status}); {done.records} records "
        f"({verdicts}); Merkle root {done.merkle_root}", markup=False, soft_wrap=True,
    )  # fmt: skip
    console.print(f"stacks: {done.stacks}", markup=False, soft_wrap=True)


@app.command("check")
@handle_errors
def check(
    folder: Annotated[Path, typer.Argument(help="The evidence pack folder.")],
    public_key: Annotated[Path, typer.Option("--public-key", help="The signer's public key.")],
    object_key: Annotated[str | None, typer.Option("--object", help="Also print and verify "
                          "this object's inclusion proof (target or source key).")] = None,
) -> None:  # fmt: skip
    """Verify the signature, every file and the manifest's Merkle root; exit 1 naming the
    first broken item."""
    key = load_public_key(public_key)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder; pass the evidence pack's folder")
    result = check_pack(folder, key)
    if not result.ok:
        err_console.print(f"error: {result.problem}", markup=False, soft_wrap=True)
        raise typer.Exit(int(ExitCode.FAILED))
    console.print(
        f"ok: signature, {result.files} files and {result.records} records "
        f"(Merkle root {result.root})", markup=False, soft_wrap=True,
    )  # fmt: skip
    if object_key is not None:
        _prove(folder, key, object_key, bytes.fromhex(result.root))


def _prove(folder: Path, key: Ed25519PublicKey, object_key: str, root: bytes) -> None:
    try:
        proof = prove(folder, key, object_key)
    except LookupError as exc:
        err_console.print(f"error: {exc.args[0]}", markup=False, soft_wrap=True)
        raise typer.Exit(int(ExitCode.FAILED)) from None
    typer.echo(json.dumps(proof.to_dict(), indent=2, ensure_ascii=False))
    if not proof_holds(proof, root):
        err_console.print(f"error: {object_key}: the inclusion proof does not lead to the root")
        raise typer.Exit(int(ExitCode.FAILED))
    console.print(f"ok: {object_key} is record {proof.index} of {proof.size}", markup=False)

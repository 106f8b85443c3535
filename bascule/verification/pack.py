"""`bascule evidence pack`: one folder an auditor checks without bascule's help.

Contents (docs/evidence-pack.md is the reference):
- ``manifest.jsonl``: one record per object of the run's datasets recorded in the journal
  (both sides' keys, etags, sizes, composites, row counts, the latest verification);
- ``run.json``: the run, its steps with outcomes, approvals, gate results, and the
  rehearsals of the same runbook; ``runbook.yaml`` when the file still has the run's content;
- ``stacks.json``: parity and policy of the Pulumi stacks, or why there are none;
- ``config.json``: the configuration with anything secret left out, and its hash;
- ``versions.json``: bascule's version and its dependencies';
- ``summary.html``: what a person reads first (self-contained);
- ``SEAL`` and ``SEAL.sig`` (`seal.py`).

The pack is written to a temporary folder beside DIR and renamed into place at the end, so
a failure leaves nothing behind. Only checksums, counts and names go in: never an identity,
a file key, a credential or a byte of plaintext.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bascule import __version__
from bascule.config import Config, secret_values
from bascule.errors import ConfigError, UsageError
from bascule.migration.journal import Journal
from bascule.verification import pack_facts
from bascule.verification.merkle import RootBuilder
from bascule.verification.pack_facts import ObjectFact, RunFact, StepFact, VerificationFact
from bascule.verification.seal import MANIFEST, canonical, seal_pack, sha256_file

LEFT_OUT = "(left out)"
_SECRET_FIELD = re.compile(r"(secret|password|passwd|token|credential|account_key|sas)", re.I)


@dataclass(frozen=True)
class PackRequest:
    """What to pack. `approval_texts` maps approve step names to their prompt (from the
    runbook); `stacks_dir` is the Pulumi project to report on (None: not configured)."""

    cfg: Config
    out: Path
    key: Ed25519PrivateKey
    run_id: int | None = None
    approval_texts: Mapping[str, str] = field(default_factory=dict)
    stacks_dir: Path | None = None


@dataclass(frozen=True)
class PackSummary:
    """What was written; `verdicts` counts the manifest's records per verification verdict."""

    folder: Path
    run: RunFact
    records: int
    merkle_root: str
    verdicts: dict[str, int]
    stacks: str
    files: tuple[str, ...]


# -- manifest --------------------------------------------------------------------------------


def manifest_record(obj: ObjectFact, check: VerificationFact | None) -> dict[str, Any]:
    """One manifest record: the journal's facts on `obj` and its latest verification."""
    record: dict[str, Any] = {
        "dataset": obj.dataset, "source_key": obj.source_key, "source_etag": obj.source_etag,
        "source_size": obj.source_size, "plaintext_sha256_composite": obj.plain_sha256,
        "target_key": obj.target_key, "target_etag": obj.target_etag,
        "target_size": obj.target_size, "ciphertext_sha256_composite": obj.cipher_sha256,
        "encrypted": obj.encrypted, "state": obj.state,
    }  # fmt: skip
    record.update(
        verdict=check.verdict if check else "not verified",
        verified_at=check.time if check else None,
        verify_level=check.level if check else None,
        verify_run=check.run_id if check else None,
        findings=list(check.findings) if check else [],
        row_format=check.row_format if check else None,
        source_rows=check.source_rows if check else None,
        target_rows=check.target_rows if check else None,
    )
    return record


def _write_manifest(
    folder: Path, records: Iterator[dict[str, Any]]
) -> tuple[bytes, int, dict[str, int]]:
    """Stream the records to manifest.jsonl; (Merkle root, count, records per verdict)."""
    builder = RootBuilder()
    verdicts: dict[str, int] = {}
    with (folder / MANIFEST).open("wb") as fh:
        for record in records:
            line = canonical(record)
            builder.add(line)
            fh.write(line + b"\n")
            verdicts[record["verdict"]] = verdicts.get(record["verdict"], 0) + 1
    return builder.root(), builder.size, verdicts


# -- run, config, versions, stacks -------------------------------------------------------------


def _approval(step: StepFact, texts: Mapping[str, str]) -> dict[str, Any]:
    return {
        "step": step.step, "phase": step.phase, "outcome": step.outcome,
        "by": step.detail.get("by"), "how": step.detail.get("how", step.mode),
        "at": step.ended or step.started, "text": texts.get(step.step),
        "message": step.detail.get("message"),
    }  # fmt: skip


def _gate(step: StepFact) -> dict[str, Any]:
    return {
        "step": step.step, "phase": step.phase, "outcome": step.outcome, "at": step.ended,
        "conditions": list(step.detail.get("conditions", ())),
        "problems": list(step.detail.get("problems", ())),
    }  # fmt: skip


def _step(step: StepFact) -> dict[str, Any]:
    """A step without bulky details (a freeze's full inventory stays in the journal)."""
    detail = {k: v for k, v in step.detail.items() if k != "snapshot"}
    return {**asdict(step), "detail": detail}


def run_document(journal: Journal, run: RunFact, texts: Mapping[str, str]) -> dict[str, Any]:
    steps = pack_facts.steps_of(journal, run.id)
    rehearsals = pack_facts.rehearsals_of(journal, run.runbook_sha256)
    return {
        "run": asdict(run),
        "steps": [_step(s) for s in steps],
        "approvals": [_approval(s, texts) for s in steps if s.kind == "approve"],
        "gates": [_gate(s) for s in steps if s.kind == "gate"],
        "rehearsals_of_this_runbook": [
            {"id": r.id, "status": r.status, "started": r.started, "ended": r.ended, "by": r.by}
            for r in rehearsals
        ],
    }


def _clean_url(value: str) -> str:
    """A URL without user:password and without a query (SAS tokens live there)."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return value
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _scrub(value: Any, key: str, secrets: list[str], left_out: list[str], where: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _scrub(v, k, secrets, left_out, f"{where}.{k}".lstrip(".")) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, key, secrets, left_out, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if _SECRET_FIELD.search(key) and not key.endswith("_env"):
        left_out.append(where)
        return LEFT_OUT
    cleaned = _clean_url(value)
    for secret in secrets:
        cleaned = cleaned.replace(secret, LEFT_OUT)
    if cleaned != value:
        left_out.append(where)
    return cleaned


def config_document(cfg: Config) -> dict[str, Any]:
    """The configuration as loaded, anything secret left out, with the SHA-256 of that
    canonical JSON and of the file the operator holds."""
    left_out: list[str] = []
    clean = _scrub(cfg.model_dump(mode="json"), "", secret_values(cfg), left_out, "")
    digest = hashlib.sha256(canonical(clean)).hexdigest()
    file_hash = sha256_file(cfg.source_path) if cfg.source_path.is_file() else None
    return {
        "config": clean, "config_sha256": digest, "config_sha256_of": "canonical JSON of config",
        "file": str(cfg.source_path.name), "file_sha256": file_hash, "left_out": left_out,
    }  # fmt: skip


def versions_document() -> dict[str, Any]:
    """bascule's version and those of its declared dependencies (those installed)."""
    deps: dict[str, str | None] = {}
    try:
        requires = metadata.requires("bascule") or []
    except metadata.PackageNotFoundError:
        requires = []
    for spec in requires:
        if "extra ==" in spec:
            continue
        name = re.split(r"[\s;<>=!~\[(]", spec, maxsplit=1)[0]
        try:
            deps[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            deps[name] = None
    return {"bascule": __version__, "python": platform.python_version(),
            "platform": platform.platform(terse=True), "dependencies": deps}  # fmt: skip


def stacks_document(project_dir: Path | None) -> dict[str, Any]:
    """Parity (the Azure stack against each OVHcloud one) and policy (every stack), run
    in-process under Pulumi's mocks; or why there are none."""
    if project_dir is None or not (project_dir / "Pulumi.yaml").is_file():
        where = f"no Pulumi.yaml in {project_dir}" if project_dir else "no stacks directory given"
        return {"configured": False, "reason": f"stacks not configured ({where})"}
    from bascule.stacks.parity import compare_runs
    from bascule.stacks.policy import check_run
    from bascule.stacks.project import load_stacks, pick_pairs, run_all

    try:
        stacks = load_stacks(project_dir)
        runs = run_all(stacks)
        src, dst = pick_pairs(stacks, None, [])
    except ConfigError as exc:
        return {"configured": False, "reason": f"stacks not usable: {exc}"}
    parity = [compare_runs(runs[src.stack], runs[d.stack]).to_dict() for d in dst]
    violations = [asdict(v) for s in stacks for v in check_run(runs[s.stack])]
    return {
        "configured": True, "stacks": [s.stack for s in stacks],
        "parity": parity, "parity_ok": all(p["ok"] for p in parity),
        "policy": {"ok": not violations, "violations": violations,
                   "resources": sum(len(r.resources) for r in runs.values())},
    }  # fmt: skip


def _stacks_line(doc: Mapping[str, Any]) -> str:
    if not doc["configured"]:
        return str(doc["reason"])
    parity = "parity ok" if doc["parity_ok"] else "parity gaps"
    policy = "policy ok" if doc["policy"]["ok"] else "policy violations"
    return f"{parity}, {policy} ({len(doc['stacks'])} stacks)"


# -- the whole pack ----------------------------------------------------------------------------


def _write_json(folder: Path, name: str, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    (folder / name).write_text(text + "\n", encoding="utf-8")


def _runbook_copy(folder: Path, run: RunFact) -> str:
    """Copy the runbook file when it still has the run's content; say what happened."""
    path = Path(run.runbook_path)
    if not run.runbook_path or not path.is_file():
        return f"runbook file {path.name or '?'} not found; its sha256 is in run.json"
    if sha256_file(path) != run.runbook_sha256:
        return f"runbook file {path.name} changed since the run; not included"
    shutil.copyfile(path, folder / "runbook.yaml")
    return "runbook.yaml is the file the run used (same sha256)"


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"-o {out}: exists and is not an empty folder; choose a new folder")
    if not out.parent.is_dir():
        raise UsageError(f"-o {out}: folder {out.parent} does not exist; create it first")


def write_pack(
    journal: Journal,
    request: PackRequest,
    render: Callable[[Mapping[str, Any]], str],
) -> PackSummary:
    """Write the pack of `request` (see the module docstring); `render` makes summary.html
    from the pack's documents. UsageError when the run or the output folder is wrong."""
    run = pack_facts.pick_run(journal, request.run_id)
    _check_out(request.out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{request.out.name}.", dir=request.out.parent))
    try:
        summary = _fill(tmp, journal, request, run, render)
        if request.out.exists():
            request.out.rmdir()
        tmp.rename(request.out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackSummary(request.out, *summary)


def _fill(folder: Path, journal: Journal, request: PackRequest, run: RunFact,
          render: Callable[[Mapping[str, Any]], str]) -> tuple[Any, ...]:  # fmt: skip
    records = (manifest_record(o, c) for o, c in pack_facts.objects_of(journal, run.datasets))
    root, count, verdicts = _write_manifest(folder, records)
    run_doc = run_document(journal, run, request.approval_texts)
    run_doc["runbook_file"] = _runbook_copy(folder, run)
    stacks = stacks_document(request.stacks_dir)
    config = config_document(request.cfg)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    docs: dict[str, Any] = {
        "run.json": run_doc,
        "stacks.json": stacks,
        "config.json": config,
        "versions.json": versions_document(),
    }
    for name, data in docs.items():
        _write_json(folder, name, data)
    overview = {
        "project": request.cfg.project,
        "created": created,
        "records": count,
        "merkle_root": root.hex(),
        "verdicts": verdicts,
        "stacks_line": _stacks_line(stacks),
        "sample": _sample(folder),
        **docs,
    }
    (folder / "summary.html").write_text(render(overview), encoding="utf-8")
    header = {
        "project": request.cfg.project,
        "created": created,
        "run": {"id": run.id, "command": run.command, "status": run.status},
    }
    seal_pack(folder, header, root, count, request.key)
    files = tuple(sorted(p.name for p in folder.iterdir()))
    return run, count, root.hex(), verdicts, _stacks_line(stacks), files


SUMMARY_ROWS = 200


def _sample(folder: Path) -> list[dict[str, Any]]:
    """The first records of the manifest, for the summary page."""
    out = []
    with (folder / MANIFEST).open("rb") as fh:
        for _, line in zip(range(SUMMARY_ROWS), fh, strict=False):
            out.append(json.loads(line))
    return out

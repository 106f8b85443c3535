"""`bascule evidence keygen|pack|check` end to end, through the CLI.

The journal is real: local folders as both sides (one encrypted dataset, one not), a
`migrate`, a `verify --level full --rows`, a rehearsal and an execute of a runbook with a
freeze, a gate, an approval and a switch. The pack of the execute run is made once; each
tampering test works on its own copy. The standalone script of docs/evidence-pack.md
(docs/check_evidence.py) checks the same packs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.age.stream import X25519Identity, write_identity_file
from bascule.verification.merkle import leaf_hash, root_from_path
from bascule.verification.seal import InclusionProof, proof_holds
from tests.e2e.test_report_html import CHROMIUM, _page_urls, _png_pixels

# The shared project runs migrate, verify, a rehearsal and an execute through the CLI, and
# each check is a CLI call: about a minute of CPU for the module.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "check_evidence.py"
MARKER = f"PLAINTEXT-MARKER-{secrets.token_hex(8)}"
IDENTITY_ENV = "T_EVIDENCE_AGE_IDENTITY"
RUNBOOK = """\
runbook: audited
phases:
  - name: preflight
    steps:
      - {name: preflight, kind: check}
  - name: copy
    steps:
      - {name: bulk copy, kind: copy}
      - {name: verify bulk, kind: verify, level: full, rows: true}
  - name: cutover
    steps:
      - {name: freeze, kind: freeze}
      - {name: go-no-go, kind: gate, conditions: [no_verification_findings, no_source_drift]}
      - {name: approve switch, kind: approve, prompt: "DPO and platform lead agree to switch?"}
      - {name: switch, kind: switch, to: target}
      - {name: smoke, kind: smoke, sample: 2}
"""


@dataclass(frozen=True)
class Project:
    root: Path
    config: Path
    env: dict[str, str]
    key: Path
    public: Path
    pack: Path  # of the execute run, with the stacks of this repository
    secrets: dict[str, bytes]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bascule.cli.app", *args],
            capture_output=True, text=True, timeout=300, env=self.env, cwd=self.root,
        )  # fmt: skip


def _seed(src: Path) -> None:
    files = {
        "dcir/claims.csv": ("id,note\n" + "".join(f"{i},{MARKER}\n" for i in range(700))).encode(),
        "dcir/events.jsonl": "".join(f'{{"n": "{MARKER}"}}\n' for _ in range(40)).encode(),
        "dcir/scan.bin": os.urandom(150_000) + MARKER.encode(),
        "dcir/empty.bin": b"",
        "open/ref.csv": f"code,label\n1,{MARKER}\n2,b\n".encode(),
    }  # fmt: skip
    for key, data in files.items():
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        (src / key).write_bytes(data)


def _write_config(root: Path, identity: X25519Identity) -> Path:
    data = {
        "project": "evidence-test",
        "journal": "state/journal.db",
        "endpoints": {"src": {"kind": "local", "path": str(root / "src")},
                      "dst": {"kind": "local", "path": str(root / "dst")}},
        "encryption": {"recipients": [str(identity.recipient())],
                       "identity_file_env": IDENTITY_ENV},
        "datasets": [
            {"name": "dcir", "source": {"endpoint": "src", "prefix": "dcir/"},
             "target": {"endpoint": "dst", "prefix": "dcir/"}},
            {"name": "open", "source": {"endpoint": "src", "prefix": "open/"},
             "target": {"endpoint": "dst", "prefix": "open/"}, "encrypt": False},
        ],
        "switchover": {"routing": {"path": "routing.json"}},
    }  # fmt: skip
    config = root / "bascule.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, [*done.args[3:5], done.stdout, done.stderr]
    return done.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("evidence")
    _seed(root / "src")
    (root / "dst").mkdir()
    identity = X25519Identity.generate()
    write_identity_file(root / "identity.txt", identity, "2026-01-01T00:00:00Z")
    config = _write_config(root, identity)
    (root / "audited.yaml").write_text(RUNBOOK)
    env = dict(os.environ, **{IDENTITY_ENV: str(root / "identity.txt")})
    p = Project(root, config, env, root / "keys" / "signer", root / "keys" / "signer.pub",
                root / "pack", {"age identity": identity.to_secret_string().encode()})  # fmt: skip
    c = str(config)
    _ok(p.cli("migrate", "-c", c))
    _ok(p.cli("verify", "-c", c, "--level", "full", "--rows"))
    _ok(p.cli("runbook", "rehearse", "audited.yaml", "-c", c))
    _ok(p.cli("runbook", "execute", "audited.yaml", "-c", c, "--yes", "--approve",
              "approve switch"))  # fmt: skip
    (root / "keys").mkdir()
    _ok(p.cli("evidence", "keygen", "--private-key", str(p.key)))
    p.secrets["evidence signing key"] = p.key.read_bytes()
    p.secrets["journal wrapping key"] = (root / "state" / "journal.db.key").read_bytes()
    _ok(p.cli("evidence", "pack", "-c", c, "-o", str(p.pack), "--key", str(p.key),
              "--stacks-dir", str(REPO)))  # fmt: skip
    return p


def _check(p: Project, pack: Path, public: Path | None = None) -> tuple[int, str]:
    done = p.cli("evidence", "check", str(pack), "--public-key", str(public or p.public))
    return done.returncode, done.stdout + done.stderr


def _script(pack: Path, public: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(pack), str(public)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _records(pack: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (pack / "manifest.jsonl").read_text().splitlines()]


# -- the pack and its check ------------------------------------------------------------------


def test_keygen_writes_a_private_key_of_mode_0600(project: Project) -> None:
    assert project.key.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in project.key.read_bytes()
    assert b"PUBLIC KEY" in project.public.read_bytes()
    again = project.cli("evidence", "keygen", "--private-key", str(project.key))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_pack_of_the_execute_run_checks_out(project: Project) -> None:
    rc, out = _check(project, project.pack)
    assert rc == 0, out
    assert "ok: signature, 6 files and 5 records" in out
    assert sorted(p.name for p in project.pack.iterdir()) == [
        "SEAL", "SEAL.sig", "config.json", "manifest.jsonl", "run.json", "runbook.yaml",
        "stacks.json", "summary.html", "versions.json",
    ]  # fmt: skip
    script = _script(project.pack, project.public)
    assert script.returncode == 0 and script.stdout.startswith("ok"), script.stdout


def test_manifest_holds_both_sides_rows_and_the_verdict(project: Project) -> None:
    records = {str(r["target_key"]): r for r in _records(project.pack)}
    assert sorted(records) == ["dcir/claims.csv", "dcir/empty.bin", "dcir/events.jsonl",
                               "dcir/scan.bin", "open/ref.csv"]  # fmt: skip
    claims = records["dcir/claims.csv"]
    assert claims["verdict"] == "verified" and claims["findings"] == []
    assert (claims["source_rows"], claims["target_rows"], claims["row_format"]) == (700, 700, "csv")
    assert claims["encrypted"] is True and claims["state"] == "committed"
    # Composites: SHA-256 over the parts' hashes, then the part count.
    assert re.fullmatch(r"[0-9a-f]{64}-1", str(claims["plaintext_sha256_composite"]))
    assert re.fullmatch(r"[0-9a-f]{64}-1", str(claims["ciphertext_sha256_composite"]))
    assert claims["source_size"] == (project.root / "src/dcir/claims.csv").stat().st_size
    assert claims["target_size"] == (project.root / "dst/dcir/claims.csv").stat().st_size
    assert claims["source_etag"] and claims["target_etag"] and claims["verified_at"]
    assert records["open/ref.csv"]["ciphertext_sha256_composite"] is None
    assert records["dcir/scan.bin"]["source_rows"] is None  # binary: no rows to count


def test_run_document_has_steps_approvals_gates_and_rehearsals(project: Project) -> None:
    doc = json.loads((project.pack / "run.json").read_text())
    assert doc["run"]["command"] == "execute" and doc["run"]["status"] == "completed"
    assert [s["step"] for s in doc["steps"]][:3] == ["preflight", "bulk copy", "verify bulk"]
    assert all(s["outcome"] == "passed" for s in doc["steps"])
    (approval,) = doc["approvals"]
    assert approval["text"] == "DPO and platform lead agree to switch?"
    assert approval["how"] == "flag" and approval["by"] and approval["at"]
    (gate,) = doc["gates"]
    assert gate["outcome"] == "passed" and gate["conditions"] == [
        "no_verification_findings", "no_source_drift"]  # fmt: skip
    assert [r["status"] for r in doc["rehearsals_of_this_runbook"]] == ["completed"]
    assert (project.pack / "runbook.yaml").read_text() == RUNBOOK


def test_stacks_config_and_versions_documents(project: Project) -> None:
    stacks = json.loads((project.pack / "stacks.json").read_text())
    assert stacks["configured"] is True and stacks["parity_ok"] is True
    assert stacks["policy"]["ok"] is True and stacks["policy"]["resources"] > 0
    config = json.loads((project.pack / "config.json").read_text())
    assert config["config"]["project"] == "evidence-test"
    assert re.fullmatch(r"[0-9a-f]{64}", config["config_sha256"])
    versions = json.loads((project.pack / "versions.json").read_text())
    assert versions["bascule"] and versions["dependencies"]["cryptography"]


def test_nothing_secret_and_no_plaintext_in_the_pack(project: Project) -> None:
    needles = {**project.secrets, "plaintext marker": MARKER.encode()}
    hits = [
        (path.name, name)
        for path in sorted(project.pack.iterdir())
        for name, value in needles.items()
        if value in path.read_bytes()
    ]
    assert hits == []
    assert MARKER.encode() in (project.root / "src/dcir/claims.csv").read_bytes()  # control


# -- tampering ------------------------------------------------------------------------------


def _copy(project: Project, tmp_path: Path) -> Path:
    return Path(shutil.copytree(project.pack, tmp_path / "pack"))


def _flip_byte(pack: Path) -> None:
    data = bytearray((pack / "manifest.jsonl").read_bytes())
    at = data.index(b'"source_size":') + len(b'"source_size":')
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    (pack / "manifest.jsonl").write_bytes(bytes(data))


def _delete_record(pack: Path) -> None:
    lines = (pack / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    (pack / "manifest.jsonl").write_bytes(b"".join(lines[:1] + lines[2:]))


def _reorder(pack: Path) -> None:
    lines = (pack / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    (pack / "manifest.jsonl").write_bytes(b"".join(lines))


def _edit_html(pack: Path) -> None:
    html = (pack / "summary.html").read_text()
    (pack / "summary.html").write_text(html.replace("completed", "complete", 1))


def _add_file(pack: Path) -> None:
    (pack / "note.txt").write_text("all fine, trust us")


TAMPERING = {
    "flip one byte in a record": (_flip_byte, "manifest.jsonl: Merkle root", "Merkle root"),
    "delete a record": (_delete_record, "manifest.jsonl: 4 records, the SEAL says 5",
                        "record count"),
    "reorder two records": (_reorder, "manifest.jsonl: Merkle root", "Merkle root"),
    "edit the HTML summary": (_edit_html, "summary.html: sha256", "summary.html"),
    "add a file": (_add_file, "note.txt: not listed in the SEAL", "note.txt"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_tampering_fails_the_check_naming_the_item(
    project: Project, tmp_path: Path, name: str
) -> None:
    tamper, named, script_named = TAMPERING[name]
    pack = _copy(project, tmp_path)
    assert _check(project, pack)[0] == 0
    tamper(pack)
    rc, out = _check(project, pack)
    assert rc == 1 and f"error: {named}" in out, out
    script = _script(pack, project.public)
    assert script.returncode == 1 and script_named in script.stdout, script.stdout


def test_another_public_key_fails_the_signature(project: Project, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _ok(project.cli("evidence", "keygen", "--private-key", str(other)))
    rc, out = _check(project, project.pack, tmp_path / "other.pub")
    assert rc == 1 and "error: SEAL.sig: the signature of SEAL does not verify" in out
    script = _script(project.pack, tmp_path / "other.pub")
    assert script.returncode == 1 and "SEAL.sig" in script.stdout


def test_a_resigned_pack_fails_with_the_operators_key(project: Project, tmp_path: Path) -> None:
    """Someone without the operator's key changes a record and seals again with their own."""
    pack = _copy(project, tmp_path)
    _flip_byte(pack)
    seal = json.loads((pack / "SEAL").read_text())
    from bascule.verification.merkle import RootBuilder
    from bascule.verification.seal import load_private_key, seal_pack

    builder = RootBuilder()
    for line in (pack / "manifest.jsonl").read_bytes().splitlines():
        builder.add(line)
    _ok(project.cli("evidence", "keygen", "--private-key", str(tmp_path / "forger")))
    header = {k: seal[k] for k in ("project", "created", "run")}
    seal_pack(pack, header, builder.root(), builder.size, load_private_key(tmp_path / "forger"))
    assert _check(project, pack, tmp_path / "forger.pub")[0] == 0
    rc, out = _check(project, pack)
    assert rc == 1 and "SEAL.sig" in out


# -- inclusion proofs ------------------------------------------------------------------------


def test_inclusion_proof_of_one_object(project: Project) -> None:
    done = project.cli("evidence", "check", str(project.pack), "--public-key",
                       str(project.public), "--object", "dcir/events.jsonl")  # fmt: skip
    out = _ok(done)
    proof_json = out[out.index("{") : out.rindex("}") + 1]
    proof = json.loads(proof_json)
    assert proof["record"]["target_key"] == "dcir/events.jsonl" and proof["tree_size"] == 5
    assert "ok: dcir/events.jsonl is record 2 of 5" in out
    record = (project.pack / "manifest.jsonl").read_bytes().splitlines()[proof["index"]]
    path = tuple(bytes.fromhex(h) for h in proof["audit_path"])
    root = bytes.fromhex(proof["merkle_root"])
    assert leaf_hash(record).hex() == proof["leaf"]
    assert root_from_path(leaf_hash(record), proof["index"], 5, path) == root
    # A record that is not in the pack (one field changed) does not lead to the signed root.
    forged = record.replace(b'"verdict":"verified"', b'"verdict":"verifiee"')
    assert forged != record
    assert not proof_holds(InclusionProof(forged, proof["index"], 5, path, root), root)
    assert proof_holds(InclusionProof(record, proof["index"], 5, path, root), root)


def test_inclusion_proof_of_an_object_not_in_the_pack_fails(project: Project) -> None:
    done = project.cli("evidence", "check", str(project.pack), "--public-key",
                       str(project.public), "--object", "dcir/not-there.csv")  # fmt: skip
    assert done.returncode == 1
    assert "error: dcir/not-there.csv: no record of this object" in done.stderr


# -- the other runs, bad input ----------------------------------------------------------------


def test_pack_of_the_rehearsal_says_stacks_not_configured(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "rehearsal-pack"
    _ok(project.cli("evidence", "pack", "-c", str(project.config), "-o", str(out), "--run",
                    "3", "--key", str(project.key)))  # fmt: skip
    assert _check(project, out)[0] == 0
    stacks = json.loads((out / "stacks.json").read_text())
    assert stacks == {"configured": False,
                      "reason": "stacks not configured (no stacks directory given)"}  # fmt: skip
    assert json.loads((out / "run.json").read_text())["run"]["command"] == "rehearse"
    assert "stacks not configured" in (out / "summary.html").read_text()


def test_bad_input_is_one_line_and_writes_nothing(project: Project, tmp_path: Path) -> None:
    c, key = str(project.config), str(project.key)
    out = tmp_path / "pack"
    cases = [
        (["--run", "1"], "--run 1: a migrate run, not a runbook run"),
        (["--run", "99"], "--run 99: no such run"),
        (["--key", str(tmp_path / "nope")], "signing key not found"),
    ]
    for extra, message in cases:
        args = ["evidence", "pack", "-c", c, "-o", str(out), "--key", key, *extra]
        done = project.cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], done.stderr
        assert not out.exists() and list(tmp_path.iterdir()) == []
    shared = tmp_path / "shared.key"
    shutil.copyfile(project.key, shared)
    shared.chmod(0o644)
    done = project.cli("evidence", "pack", "-c", c, "-o", str(out), "--key", str(shared))
    assert done.returncode == 2 and "readable by others" in done.stderr
    done = project.cli("evidence", "pack", "-c", c, "-o", str(project.pack), "--key", key)
    assert done.returncode == 2 and "not an empty folder" in done.stderr


# -- the HTML summary in a browser, and the docs --------------------------------------------


def test_summary_renders_in_headless_chromium_without_network(
    project: Project, tmp_path: Path
) -> None:
    assert CHROMIUM, "Debian's chromium is missing: run scripts/system-deps.sh"
    html = (project.pack / "summary.html").read_text()
    assert "default-src 'none'" in html
    assert not re.search(r"<(script|link|img|iframe)\b", html, re.I)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=1"]  # fmt: skip
    url = (project.pack / "summary.html").resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for table in ("steps", "approvals", "gates", "objects", "parity"):
        assert f'<table id="{table}">' in dom.stdout, table
    assert "dcir/claims.csv" in dom.stdout and "DPO and platform lead agree" in dom.stdout
    assert not _page_urls(dom.stderr), f"network requests: {_page_urls(dom.stderr)[:5]}"
    shot = tmp_path / "shot.png"
    done = subprocess.run([*flags, "--window-size=1200,1400", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=90)  # fmt: skip
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    _, _, raw = _png_pixels(shot)
    distinct = len(set(raw[i : i + 3] for i in range(0, min(len(raw), 3_000_000), 997)))
    assert distinct > 20, "the screenshot looks blank"


def test_docs_show_the_standalone_script_verbatim() -> None:
    doc = (REPO / "docs" / "evidence-pack.md").read_text()
    assert SCRIPT.read_text().strip() in doc

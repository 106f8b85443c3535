"""The evidence pack's seal: Ed25519 keys, the signed SEAL document, and its check.

A pack is a folder. ``SEAL`` (JSON) holds the manifest's record count and Merkle root
(`merkle.py`) and the SHA-256 of every other file; ``SEAL.sig`` holds the base64 Ed25519
signature of the SEAL's exact bytes. `check_pack` verifies, in this order, and stops at the
first broken item: the signature, every listed file, no unlisted file, the record count,
the root. docs/evidence-pack.md describes the format for checkers written elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bascule.errors import ConfigError, UsageError
from bascule.verification.merkle import RootBuilder, audit_path, leaf_hash, root_from_path

FORMAT = "bascule-evidence-pack/1"
SEAL = "SEAL"
SIGNATURE = "SEAL.sig"
MANIFEST = "manifest.jsonl"
LEAF_RULE = "sha256(0x00 || record line without its newline)"
NODE_RULE = "sha256(0x01 || left || right); RFC 6962 tree"


def canonical(record: dict[str, Any]) -> bytes:
    """A record's bytes in the manifest: JSON, keys sorted, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


# -- keys ------------------------------------------------------------------------------------


def write_keypair(private: Path, public: Path) -> str:
    """Create an Ed25519 key pair: `private` (PKCS#8 PEM, mode 0600) and `public` (PEM).
    Returns the public key's fingerprint. UsageError when either file exists."""
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise UsageError(
                f"{path} already exists; a key is never overwritten: choose another path "
                "or move the old file away"
            )
        if not path.parent.is_dir():
            raise UsageError(f"directory {path.parent} does not exist; create it first")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(_public_pem(key.public_key()))
    return fingerprint(key.public_key())


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at `path`. ConfigError when missing, readable by others, or not an
    Ed25519 private key (the message never shows the file's content)."""
    if not path.is_file():
        raise ConfigError(f"{path}: signing key not found; create one: bascule evidence keygen")
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path}: signing key is readable by others; run `chmod 600 {path}`")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key in PEM; use the file keygen wrote")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The public key at `path`. ConfigError when missing or not an Ed25519 public key."""
    if not path.is_file():
        raise ConfigError(f"{path}: public key not found; pass the .pub file keygen wrote")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key in PEM; pass the .pub file")
    return key


# -- sealing ---------------------------------------------------------------------------------


def seal_pack(folder: Path, header: dict[str, Any], root: bytes, records: int,
              key: Ed25519PrivateKey) -> dict[str, Any]:  # fmt: skip
    """Write SEAL (hashing every file of `folder` but the manifest) and SEAL.sig."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name not in (MANIFEST, SEAL, SIGNATURE)
    }
    seal = dict(header)
    seal.update(
        format=FORMAT,
        manifest={"file": MANIFEST, "records": records, "merkle_root": root.hex(),
                  "leaf": LEAF_RULE, "node": NODE_RULE},
        files=files,
        public_key_sha256=fingerprint(key.public_key()),
    )  # fmt: skip
    body = (json.dumps(seal, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    (folder / SEAL).write_bytes(body)
    (folder / SIGNATURE).write_text(base64.b64encode(key.sign(body)).decode() + "\n")
    return seal


# -- checking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """`problem` names the first broken item ("" when the pack checks out)."""

    problem: str
    records: int = 0
    files: int = 0
    root: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


class _Broken(Exception):
    pass


def _signed_seal(folder: Path, key: Ed25519PublicKey) -> dict[str, Any]:
    for name in (SEAL, SIGNATURE):
        if not (folder / name).is_file():
            raise _Broken(f"{name}: missing; this folder is not a sealed evidence pack")
    body = (folder / SEAL).read_bytes()
    try:
        key.verify(base64.b64decode((folder / SIGNATURE).read_bytes(), validate=False), body)
    except (InvalidSignature, binascii.Error):
        raise _Broken(
            f"{SIGNATURE}: the signature of SEAL does not verify with this public key "
            f"({fingerprint(key)[:16]}); wrong key, or SEAL was changed"
        ) from None
    try:
        seal: dict[str, Any] = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Broken(f"{SEAL}: signed, but not JSON; not an evidence pack") from None
    if not isinstance(seal, dict) or seal.get("format") != FORMAT:
        raise _Broken(f"{SEAL}: format {seal.get('format')!r} is not {FORMAT}")
    return seal


def _check_files(folder: Path, files: dict[str, str]) -> None:
    for name, expected in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise _Broken(f"{name}: missing (listed in the SEAL)")
        got = sha256_file(path)
        if got != expected:
            raise _Broken(
                f"{name}: sha256 {got[:16]}... differs from the SEAL's {expected[:16]}..."
            )
    known = {*files, MANIFEST, SEAL, SIGNATURE}
    for path in sorted(folder.iterdir()):
        if path.name not in known:
            raise _Broken(f"{path.name}: not listed in the SEAL (added after sealing)")


def manifest_lines(folder: Path) -> list[bytes]:
    """The manifest's record lines (without newlines)."""
    data = (folder / MANIFEST).read_bytes() if (folder / MANIFEST).is_file() else None
    if data is None:
        raise _Broken(f"{MANIFEST}: missing")
    if data and not data.endswith(b"\n"):
        raise _Broken(f"{MANIFEST}: the last record has no newline (file truncated?)")
    return data.split(b"\n")[:-1] if data else []


def _check_manifest(folder: Path, manifest: dict[str, Any]) -> str:
    builder = RootBuilder()
    for line in manifest_lines(folder):
        builder.add(line)
    if builder.size != manifest["records"]:
        raise _Broken(
            f"{MANIFEST}: {builder.size} records, the SEAL says {manifest['records']} "
            "(a record was removed or added)"
        )
    root = builder.root().hex()
    if root != manifest["merkle_root"]:
        raise _Broken(
            f"{MANIFEST}: Merkle root {root[:16]}... differs from the SEAL's "
            f"{manifest['merkle_root'][:16]}... (a record was changed or reordered)"
        )
    return root


def check_pack(folder: Path, key: Ed25519PublicKey) -> CheckResult:
    """Verify the pack in `folder` with `key` (see the module docstring for the order)."""
    try:
        seal = _signed_seal(folder, key)
        _check_files(folder, seal["files"])
        root = _check_manifest(folder, seal["manifest"])
    except _Broken as exc:
        return CheckResult(str(exc))
    return CheckResult("", seal["manifest"]["records"], len(seal["files"]), root)


# -- inclusion proofs --------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """One record, its index, the tree size, its audit path and the root it implies."""

    record: bytes
    index: int
    size: int
    path: tuple[bytes, ...]
    root: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": json.loads(self.record), "index": self.index, "tree_size": self.size,
            "leaf": leaf_hash(self.record).hex(), "audit_path": [h.hex() for h in self.path],
            "merkle_root": self.root.hex(),
        }  # fmt: skip


def _matches(line: bytes, key: str) -> bool:
    record = json.loads(line)
    return key in (record.get("target_key"), record.get("source_key"))


def prove(folder: Path, key: Ed25519PublicKey, object_key: str) -> InclusionProof:
    """The inclusion proof of the record whose target (or source) key is `object_key`,
    checked against the signed root. UsageError for a pack that does not check out;
    LookupError when no record names that key."""
    result = check_pack(folder, key)
    if not result.ok:
        raise UsageError(f"{folder}: {result.problem}")
    lines = manifest_lines(folder)
    found = [i for i, line in enumerate(lines) if _matches(line, object_key)]
    if not found:
        raise LookupError(f"{object_key}: no record of this object in {folder / MANIFEST}")
    leaves = [leaf_hash(line) for line in lines]
    index = found[0]
    path = tuple(audit_path(index, leaves))
    return InclusionProof(lines[index], index, len(lines), path, bytes.fromhex(result.root))


def proof_holds(proof: InclusionProof, signed_root: bytes) -> bool:
    """True when the proof's record, index and path lead to `signed_root`."""
    implied = root_from_path(leaf_hash(proof.record), proof.index, proof.size, proof.path)
    return implied == signed_root

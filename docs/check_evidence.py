"""Check a bascule evidence pack without bascule: python3 check_evidence.py DIR PUBLIC_KEY.pem"""

import base64
import hashlib
import json
import pathlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def root(leaves: list[bytes]) -> bytes:  # RFC 6962: split at the largest power of 2 below n
    if len(leaves) <= 1:
        return leaves[0] if leaves else sha(b"")
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha(b"\x01" + root(leaves[:k]) + root(leaves[k:]))


def first_problem(pack: pathlib.Path, public_key_pem: bytes) -> str | None:
    seal = (pack / "SEAL").read_bytes()
    try:
        signature = base64.b64decode((pack / "SEAL.sig").read_bytes())
        load_pem_public_key(public_key_pem).verify(signature, seal)  # type: ignore[union-attr]
    except (InvalidSignature, ValueError):
        return "SEAL.sig: the signature does not verify with this public key"
    doc = json.loads(seal)
    for name, digest in sorted(doc["files"].items()):
        if not (pack / name).is_file() or sha((pack / name).read_bytes()).hex() != digest:
            return f"{name}: missing, or its sha256 differs from the SEAL's"
    sealed = {*doc["files"], "SEAL", "SEAL.sig", "manifest.jsonl"}
    for extra in sorted(p.name for p in pack.iterdir() if p.name not in sealed):
        return f"{extra}: not listed in the SEAL"
    lines = (pack / "manifest.jsonl").read_bytes().split(b"\n")
    if lines.pop() != b"" or len(lines) != doc["manifest"]["records"]:
        return "manifest.jsonl: the record count differs from the SEAL's"
    if root([sha(b"\x00" + line) for line in lines]).hex() != doc["manifest"]["merkle_root"]:
        return "manifest.jsonl: the Merkle root differs from the SEAL's"
    return None


if __name__ == "__main__":
    problem = first_problem(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_bytes())
    print(f"broken: {problem}" if problem else "ok: signature, files and manifest root")
    sys.exit(1 if problem else 0)

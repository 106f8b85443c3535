"""Every C2SP CCTV age test vector gives its expected outcome (tests/data/age-testvectors).

Each vector is run through `decrypt_stream` (whole file; armored when the vector says so,
as the reference test harness does) and, when not armored, through `AgeRangeReader`.
Expected classes map to our errors: header failure -> AgeHeaderError, HMAC failure ->
AgeHeaderMacError, payload failure -> AgePayloadError, no match -> AgeNoMatchError,
armor failure -> AgeArmorError. For success and payload failure, the SHA-256 of the
plaintext released (before the error) must equal the vector's `payload`.

Armor: supported for reading (decrypt_stream), so the armored vectors are applicable; the
range reader refuses armor (it needs the binary layout) and is not run on them.

Not applicable, with the outcome we must give instead (`NOT_APPLICABLE`): vectors that
only succeed with a passphrase (scrypt) or a post-quantum hybrid identity: we hold
neither kind, so each must end in "no match", never in a success or a crash.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from bascule.age.stream import (
    AgeArmorError,
    AgeHeaderError,
    AgeHeaderMacError,
    AgeNoMatchError,
    AgePayloadError,
    AgeRangeReader,
    X25519Identity,
    decrypt_stream,
)
from bascule.errors import EncryptionError

VECTORS = Path(__file__).parent.parent / "data" / "age-testvectors" / "testdata"

OUTCOME_OF: dict[type[EncryptionError], str] = {
    AgeArmorError: "armor failure",
    AgeHeaderError: "header failure",
    AgeHeaderMacError: "HMAC failure",
    AgeNoMatchError: "no match",
    AgePayloadError: "payload failure",
}

_PASSPHRASE = "needs the scrypt passphrase; we never use passphrase-encrypted files"
_HYBRID = "needs an ML-KEM-768+X25519 hybrid identity; only X25519 identities are supported"
# name -> (outcome we give instead, reason)
NOT_APPLICABLE: dict[str, tuple[str, str]] = {
    "scrypt": ("no match", _PASSPHRASE),
    "armor_scrypt": ("no match", _PASSPHRASE),
    "hybrid": ("no match", _HYBRID),
    "armor_hybrid": ("no match", _HYBRID),
    "hybrid_and_x25519": ("no match", _HYBRID + " (its X25519 stanza is not for our key)"),
    "hybrid_grease": ("no match", _HYBRID),
    "hybrid_multiple_recipients": ("no match", _HYBRID),
}


@dataclass(frozen=True)
class Vector:
    name: str
    expect: str
    payload_sha256: str | None
    identities: tuple[X25519Identity, ...]
    armored: bool
    body: bytes


def load_vector(path: Path) -> Vector:
    head, _, body = path.read_bytes().partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        fields.setdefault(key, []).append(value)
    if fields.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    identities = tuple(
        X25519Identity.parse(v)
        for v in fields.get("identity", [])
        if not v.startswith("AGE-SECRET-KEY-PQ-")
    )
    return Vector(
        name=path.name,
        expect=fields["expect"][0],
        payload_sha256=fields.get("payload", [None])[0],
        identities=identities,
        armored=fields.get("armored") == ["yes"],
        body=body,
    )


ALL_NAMES = sorted(p.name for p in VECTORS.iterdir())


def run_stream(vector: Vector) -> tuple[str, bytes]:
    out = io.BytesIO()
    try:
        decrypt_stream(io.BytesIO(vector.body), out, vector.identities, armored=vector.armored)
    except EncryptionError as exc:
        return OUTCOME_OF[type(exc)], out.getvalue()
    return "success", out.getvalue()


def run_range_reader(vector: Vector) -> tuple[str, bytes]:
    body = vector.body
    try:
        reader = AgeRangeReader(lambda o, n: body[o : o + n], len(body), vector.identities)
        return "success", reader.read(0, reader.size)
    except EncryptionError as exc:
        return OUTCOME_OF[type(exc)], b""


def test_the_copy_is_complete() -> None:
    sums = (VECTORS.parent / "SHA256SUMS").read_text().split("\n")
    listed = {line.split()[1]: line.split()[0] for line in sums if line.strip()}
    assert sorted(listed) == ALL_NAMES
    assert len(ALL_NAMES) == 143
    for name, digest in listed.items():
        assert hashlib.sha256((VECTORS / name).read_bytes()).hexdigest() == digest, name
    assert set(NOT_APPLICABLE) <= set(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_vector_outcome(name: str) -> None:
    vector = load_vector(VECTORS / name)
    outcome, released = run_stream(vector)
    if name in NOT_APPLICABLE:
        assert outcome == NOT_APPLICABLE[name][0]
        assert released == b""
        return
    assert outcome == vector.expect
    if vector.payload_sha256 is not None:
        assert hashlib.sha256(released).hexdigest() == vector.payload_sha256


@pytest.mark.parametrize(
    "name",
    [n for n in ALL_NAMES if not n.startswith("armor_") and n not in NOT_APPLICABLE],
)
def test_vector_through_range_reader(name: str) -> None:
    """Random access reaches the same verdict; it releases nothing from a broken payload."""
    vector = load_vector(VECTORS / name)
    outcome, plaintext = run_range_reader(vector)
    assert outcome == vector.expect
    if outcome == "success":
        assert hashlib.sha256(plaintext).hexdigest() == vector.payload_sha256


def test_applicable_counts() -> None:
    """The report quotes these numbers: keep them true."""
    expects = [load_vector(VECTORS / n).expect for n in ALL_NAMES if n not in NOT_APPLICABLE]
    assert len(expects) == 136
    assert len(NOT_APPLICABLE) == 7
    assert expects.count("success") == 19

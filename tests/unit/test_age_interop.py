"""What we write, the reference age CLI and pyrage read byte for byte; what they write, we read.

Two independent readers: Debian's `age` (the Go reference implementation) and PyPI's
`pyrage` (Rust rage). Files are built as a transfer builds them: parts of whole chunks
sealed in shuffled order, then concatenated.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
from pathlib import Path

import pyrage
import pytest

from bascule.age.stream import (
    CHUNK_SIZE,
    AgeRangeReader,
    PayloadCipher,
    X25519Identity,
    X25519Recipient,
    decrypt_stream,
    new_file,
    write_identity_file,
)

AGE = "/usr/bin/age"
PART_CHUNKS = 80  # a 5 MiB transfer part
SIZES = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE * PART_CHUNKS + 5]
OPS = X25519Identity.generate()
RECOVERY = X25519Identity.generate()


@pytest.fixture(scope="module")
def identity_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    files = {}
    for name, identity in (("ops", OPS), ("recovery", RECOVERY)):
        files[name] = folder / f"{name}.txt"
        write_identity_file(files[name], identity, "test")
    return files


def seal_in_parts(plaintext: bytes, recipients: list[X25519Recipient]) -> bytes:
    material = new_file(recipients)
    cipher = PayloadCipher(material.file_key, material.nonce)
    part = PART_CHUNKS * CHUNK_SIZE
    starts = list(range(0, max(len(plaintext), 1), part))
    sealed = {}
    for i in random.Random(len(plaintext)).sample(range(len(starts)), len(starts)):
        chunk_index = starts[i] // CHUNK_SIZE
        final = i == len(starts) - 1
        sealed[i] = cipher.encrypt_chunks(chunk_index, plaintext[starts[i] :][:part], final)
    return material.header + material.nonce + b"".join(sealed[i] for i in range(len(starts)))


def age_decrypt(data: bytes, identity_file: Path) -> bytes:
    done = subprocess.run(
        [AGE, "-d", "-i", str(identity_file)], input=data, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("recipients", [1, 2])
def test_age_cli_and_pyrage_read_what_we_write(
    size: int, recipients: int, identity_files: dict[str, Path]
) -> None:
    plaintext = os.urandom(size)
    keys = [OPS, RECOVERY][:recipients]
    data = seal_in_parts(plaintext, [k.recipient() for k in keys])
    for name, identity in zip(("ops", "recovery"), keys, strict=False):
        assert age_decrypt(data, identity_files[name]) == plaintext
        rage_identity = pyrage.x25519.Identity.from_str(identity.to_secret_string())
        assert pyrage.decrypt(data, [rage_identity]) == plaintext


def test_age_cli_rejects_our_file_when_a_chunk_is_flipped(identity_files: dict[str, Path]) -> None:
    """The oracle agrees with us: the tamper tests test the file, not our reader only."""
    data = bytearray(seal_in_parts(os.urandom(3 * CHUNK_SIZE), [OPS.recipient()]))
    data[-CHUNK_SIZE] ^= 1
    done = subprocess.run(
        [AGE, "-d", "-i", str(identity_files["ops"])], input=bytes(data), capture_output=True
    )
    assert done.returncode != 0


@pytest.mark.parametrize("size", SIZES)
def test_we_read_what_age_cli_writes(size: int) -> None:
    plaintext = os.urandom(size)
    done = subprocess.run(
        [AGE, "-e", "-r", str(OPS.recipient()), "-r", str(RECOVERY.recipient())],
        input=plaintext,
        capture_output=True,
        check=True,
    )
    data = done.stdout
    for identity in (OPS, RECOVERY):
        out = io.BytesIO()
        assert decrypt_stream(io.BytesIO(data), out, [identity]) == size
        assert out.getvalue() == plaintext
    reader = AgeRangeReader(lambda o, n: data[o : o + n], len(data), [OPS])
    assert reader.size == size
    rnd = random.Random(size)
    for _ in range(20):
        offset = rnd.randint(0, size)
        length = rnd.choice([0, 1, 100, CHUNK_SIZE, 3 * CHUNK_SIZE + 7])
        assert reader.read(offset, length) == plaintext[offset : offset + length]


def test_we_read_armored_age_cli_output() -> None:
    plaintext = os.urandom(1000)
    armored = subprocess.run(
        [AGE, "-e", "-a", "-r", str(OPS.recipient())],
        input=plaintext,
        capture_output=True,
        check=True,
    ).stdout
    assert armored.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(armored), out, [OPS])
    assert out.getvalue() == plaintext


def test_we_read_what_pyrage_writes() -> None:
    plaintext = os.urandom(2 * CHUNK_SIZE + 11)
    data = pyrage.encrypt(plaintext, [pyrage.x25519.Recipient.from_str(str(OPS.recipient()))])
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, [OPS])
    assert out.getvalue() == plaintext
    reader = AgeRangeReader(lambda o, n: data[o : o + n], len(data), [OPS])
    assert reader.read(CHUNK_SIZE - 3, 10) == plaintext[CHUNK_SIZE - 3 : CHUNK_SIZE + 7]

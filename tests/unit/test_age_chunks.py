"""STREAM chunks sealed alone, the size maths, tampering, and random access."""

from __future__ import annotations

import io
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bascule.age.stream import (
    CHUNK_OVERHEAD,
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    AgeArmorError,
    AgeHeaderError,
    AgeHeaderMacError,
    AgeNoMatchError,
    AgePayloadError,
    AgeRangeReader,
    FileKeyMaterial,
    PayloadCipher,
    X25519Identity,
    chunk_count,
    chunk_offset,
    ciphertext_size,
    decrypt_stream,
    encrypt_stream,
    new_file,
    parse_header,
    plaintext_size,
    unwrap_file_key,
)

IDENTITY = X25519Identity.generate()
OTHER = X25519Identity.generate()


def seal_in_parts(plaintext: bytes, part_chunks: int, seed: int) -> tuple[bytes, FileKeyMaterial]:
    """An age file built as a transfer does: parts of whole chunks sealed in random order."""
    material = new_file([IDENTITY.recipient()])
    cipher = PayloadCipher(material.file_key, material.nonce)
    part_size = part_chunks * CHUNK_SIZE
    starts = list(range(0, max(len(plaintext), 1), part_size))
    order = list(range(len(starts)))
    random.Random(seed).shuffle(order)
    sealed: dict[int, bytes] = {}
    for i in order:
        start = starts[i]
        final = i == len(starts) - 1
        sealed[i] = cipher.encrypt_chunks(
            start // CHUNK_SIZE, plaintext[start : start + part_size], final
        )
    body = b"".join(sealed[i] for i in range(len(starts)))
    return material.header + material.nonce + body, material


def open_whole(data: bytes, identity: X25519Identity = IDENTITY) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, [identity])
    return out.getvalue()


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (0, 1),
        (1, 1),
        (CHUNK_SIZE - 1, 1),
        (CHUNK_SIZE, 1),
        (CHUNK_SIZE + 1, 2),
        (80 * CHUNK_SIZE, 80),
    ],
)
def test_size_maths(size: int, chunks: int) -> None:
    assert chunk_count(size) == chunks
    total = ciphertext_size(size, 200)
    assert total == 200 + NONCE_SIZE + size + CHUNK_OVERHEAD * chunks
    assert plaintext_size(total, 200) == size
    assert chunk_offset(chunks, 200) == 200 + NONCE_SIZE + chunks * ENCRYPTED_CHUNK_SIZE


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (-1, AgeHeaderError),  # nonce cut
        (0, AgePayloadError),  # no chunk
        (15, AgePayloadError),  # shorter than a tag
        (ENCRYPTED_CHUNK_SIZE + 16, AgePayloadError),  # empty final chunk after a full one
        (ENCRYPTED_CHUNK_SIZE + 7, AgePayloadError),
    ],
)
def test_plaintext_size_rejects_impossible_layouts(payload: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        plaintext_size(100 + NONCE_SIZE + payload, 100)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE * 4 + 5])
def test_parts_sealed_alone_in_any_order_form_a_valid_file(size: int) -> None:
    plaintext = os.urandom(size)
    data, material = seal_in_parts(plaintext, part_chunks=4, seed=size)
    assert len(data) == ciphertext_size(size, len(material.header))
    assert parse_header(data) == (material.header, len(material.header))
    assert unwrap_file_key(material.header, [IDENTITY]) == material.file_key
    assert open_whole(data) == plaintext


def test_stream_and_parts_agree() -> None:
    plaintext = os.urandom(17 * CHUNK_SIZE + 3)
    out = io.BytesIO()
    written = encrypt_stream(io.BytesIO(plaintext), out, [IDENTITY.recipient(), OTHER.recipient()])
    assert written == len(out.getvalue())
    assert open_whole(out.getvalue(), OTHER) == plaintext
    header_len = parse_header(out.getvalue())[1]
    assert written == ciphertext_size(len(plaintext), header_len)


def test_file_key_is_not_in_the_repr() -> None:
    material = new_file([IDENTITY.recipient()])
    assert material.file_key.hex() not in repr(material)
    assert repr(material.file_key) not in repr(material)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 3])
def test_encrypt_into_a_buffer_matches(size: int) -> None:
    cipher = PayloadCipher(os.urandom(16), os.urandom(16))
    plaintext = os.urandom(size)
    out = bytearray(3 * ENCRYPTED_CHUNK_SIZE + 1)
    written = cipher.encrypt_chunks_into(0, plaintext, True, out)
    assert bytes(out[:written]) == cipher.encrypt_chunks(0, plaintext, final=True)
    with pytest.raises(ValueError, match="output buffer"):
        cipher.encrypt_chunks_into(0, plaintext, True, bytearray(written - 1))


def test_encrypt_chunks_refuses_misaligned_input() -> None:
    cipher = PayloadCipher(bytes(16), bytes(16))
    with pytest.raises(ValueError, match="whole chunks"):
        cipher.encrypt_chunks(0, b"x" * 10, final=False)
    with pytest.raises(ValueError, match="empty"):
        cipher.encrypt_chunks(3, b"", final=True)


SIZE = 3 * CHUNK_SIZE + 100
PLAIN = os.urandom(SIZE)
SEALED, MATERIAL = seal_in_parts(PLAIN, part_chunks=1, seed=1)
PAYLOAD_START = len(MATERIAL.header) + NONCE_SIZE


@pytest.mark.parametrize("chunk", range(4))
def test_flipped_bit_in_any_chunk_is_caught(chunk: int) -> None:
    data = bytearray(SEALED)
    data[PAYLOAD_START + chunk * ENCRYPTED_CHUNK_SIZE + 50] ^= 0x04
    with pytest.raises(AgePayloadError, match=f"chunk {chunk} failed authentication"):
        open_whole(bytes(data))
    reader = AgeRangeReader(lambda o, n: bytes(data[o : o + n]), len(data), [IDENTITY])
    with pytest.raises(AgePayloadError, match=f"chunk {chunk} failed"):
        reader.read(chunk * CHUNK_SIZE, 1)


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_truncation_at_a_chunk_boundary_is_caught(keep: int) -> None:
    cut = SEALED[: PAYLOAD_START + keep * ENCRYPTED_CHUNK_SIZE]
    with pytest.raises(AgePayloadError, match=r"not marked final|truncated"):
        open_whole(cut)
    reader = AgeRangeReader(lambda o, n: cut[o : o + n], len(cut), [IDENTITY])
    assert reader.size == keep * CHUNK_SIZE
    with pytest.raises(AgePayloadError, match=f"final chunk {keep - 1} failed"):
        reader.read(reader.size - 1, 1)


def test_swapped_chunks_are_caught() -> None:
    c = [SEALED[chunk_offset(i, len(MATERIAL.header)) :][:ENCRYPTED_CHUNK_SIZE] for i in range(4)]
    swapped = SEALED[:PAYLOAD_START] + c[1] + c[0] + c[2] + c[3]
    assert len(swapped) == len(SEALED)
    with pytest.raises(AgePayloadError, match="chunk 0 failed authentication"):
        open_whole(swapped)


def test_wrong_identity_is_no_match() -> None:
    with pytest.raises(AgeNoMatchError, match="no identity given"):
        open_whole(SEALED, OTHER)
    with pytest.raises(AgeNoMatchError):
        AgeRangeReader(lambda o, n: SEALED[o : o + n], len(SEALED), [OTHER])


def test_altered_header_fails_its_mac() -> None:
    other = new_file([IDENTITY.recipient(), OTHER.recipient()])
    # a second stanza spliced in: IDENTITY still unwraps, but the MAC no longer covers it
    own_stanza_end = MATERIAL.header.index(b"---")
    spliced_stanza = other.header[other.header.index(b"\n-> ", 30) + 1 : other.header.index(b"---")]
    header = MATERIAL.header[:own_stanza_end] + spliced_stanza + MATERIAL.header[own_stanza_end:]
    with pytest.raises(AgeHeaderMacError, match="header was altered"):
        open_whole(header + SEALED[len(MATERIAL.header) :])


def test_range_reader_refuses_armor() -> None:
    armored = b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"
    with pytest.raises(AgeArmorError, match="cannot be read by range"):
        AgeRangeReader(lambda o, n: armored[o : o + n], len(armored), [IDENTITY])


class CountingSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        return self.data[offset : offset + length]


def test_range_reader_makes_one_call_per_read_and_reuses_the_first_window() -> None:
    plain = os.urandom(10 * CHUNK_SIZE + 9)
    data, _ = seal_in_parts(plain, part_chunks=3, seed=2)
    source = CountingSource(data)
    reader = AgeRangeReader(source, len(data), [IDENTITY])
    assert len(source.calls) == 1
    assert reader.read(10, 1000) == plain[10:1010]  # inside chunk 0: served from the window
    assert len(source.calls) == 1
    assert reader.read(CHUNK_SIZE - 5, 3 * CHUNK_SIZE) == plain[CHUNK_SIZE - 5 : 4 * CHUNK_SIZE - 5]
    assert len(source.calls) == 2
    assert reader.read(len(plain) - 20, 100) == plain[-20:]  # the tail (a Parquet footer)
    assert len(source.calls) == 3
    offset, length = source.calls[-1]
    assert offset + length == len(data) and length == 9 + CHUNK_OVERHEAD + ENCRYPTED_CHUNK_SIZE


def test_range_reader_reads_long_headers() -> None:
    many = [X25519Identity.generate().recipient() for _ in range(200)]  # ~27 KiB of header
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(b"payload"), out, [*many, IDENTITY.recipient()])
    data = out.getvalue()
    reader = AgeRangeReader(lambda o, n: data[o : o + n], len(data), [IDENTITY])
    assert reader.read(0, 100) == b"payload"


def test_range_reader_checks_an_empty_file() -> None:
    data, _ = seal_in_parts(b"", part_chunks=1, seed=3)
    assert AgeRangeReader(lambda o, n: data[o : o + n], len(data), [IDENTITY]).size == 0
    broken = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(AgePayloadError):
        AgeRangeReader(lambda o, n: broken[o : o + n], len(broken), [IDENTITY])


def test_short_ranged_read_is_reported() -> None:
    reader = AgeRangeReader(
        lambda o, n: SEALED[o : o + n], len(SEALED) + ENCRYPTED_CHUNK_SIZE, [IDENTITY]
    )
    with pytest.raises(AgePayloadError, match="returned"):
        reader.read(reader.size - 1, 1)


@st.composite
def files_and_ranges(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    size = draw(
        st.one_of(
            st.integers(0, 3 * CHUNK_SIZE + 2),
            st.sampled_from([CHUNK_SIZE, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 1]),
        )
    )
    ranges = draw(
        st.lists(
            st.tuples(st.integers(0, size + 10), st.integers(0, 2 * CHUNK_SIZE + 5)), max_size=6
        )
    )
    return size, ranges


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files_and_ranges(), st.integers(1, 3), st.integers(0, 2**32))
def test_range_reader_reads_any_slice(
    case: tuple[int, list[tuple[int, int]]], part_chunks: int, seed: int
) -> None:
    size, ranges = case
    plain = random.Random(seed).randbytes(size)
    data, _ = seal_in_parts(plain, part_chunks=part_chunks, seed=seed)
    source = CountingSource(data)
    reader = AgeRangeReader(source, len(data), [IDENTITY])
    assert reader.size == size
    for offset, length in ranges:
        before = len(source.calls)
        assert reader.read(offset, length) == plain[offset : offset + length]
        assert len(source.calls) - before <= 1

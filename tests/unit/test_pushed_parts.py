"""A part read by push (`read_to`) is built byte for byte as one read from a stream: the
same ciphertext, the same digests, whatever the sizes of the pieces the network hands over;
and a body of the wrong length is a transient error, never a smaller or larger part."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from bascule.age.sizes import CHUNK_SIZE
from bascule.age.stream import PayloadCipher
from bascule.errors import TransientStorageError
from bascule.migration.plan import plan_parts
from bascule.migration.tasks import READ_SIZE, _PlainSink, _seal, _SealSink

KEY = bytes(range(16))
NONCE = bytes(range(16, 32))
HEADER = 100  # bytes before the payload in part 1


def pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(data[pos : pos + size])
        pos, i = pos + size, i + 1
    return out


@pytest.mark.parametrize("sizes", [[16 * 1024], [1], [7 * 1024 + 3, READ_SIZE + 5], [1 << 24]])
def test_sealed_by_push_as_by_stream(sizes: list[int]) -> None:
    size = 2 * READ_SIZE + 3 * CHUNK_SIZE + 11  # whole pieces, whole chunks and a tail
    data = os.urandom(size)
    for part in plan_parts(size, READ_SIZE * 2, encrypt=True, header_len=HEADER):
        plain = data[part.plain_offset : part.plain_offset + part.plain_length]
        start = HEADER if part.number == 1 else 0
        by_stream = bytearray(part.cipher_length)
        streamed = _seal(
            io.BytesIO(plain), "src", PayloadCipher(KEY, NONCE), part,
            memoryview(by_stream), start,
        )  # fmt: skip
        by_push = bytearray(part.cipher_length)
        sink = _SealSink(PayloadCipher(KEY, NONCE), part, memoryview(by_push), start, "src")
        for piece in pieces(plain, sizes):
            sink(piece)
        assert sink.finish() == streamed
        assert by_push == by_stream


def test_a_plain_part_is_copied_into_place() -> None:
    data = os.urandom(100_000)
    body = bytearray(len(data))
    sink = _PlainSink(memoryview(body), "src")
    for piece in pieces(data, [16 * 1024, 3]):
        sink(piece)
    assert sink.finish() == (hashlib.sha256(data).hexdigest(), len(data))
    assert body == data


def test_a_body_longer_or_shorter_than_planned_is_transient() -> None:
    part = plan_parts(3 * CHUNK_SIZE, 3 * CHUNK_SIZE, encrypt=True, header_len=0)[0]
    sink = _SealSink(PayloadCipher(KEY, NONCE), part, memoryview(bytearray(4 << 20)), 0, "src")
    sink(b"x" * part.plain_length)
    with pytest.raises(TransientStorageError, match="more bytes than the planned range"):
        sink(b"y")
    short = _SealSink(PayloadCipher(KEY, NONCE), part, memoryview(bytearray(4 << 20)), 0, "src")
    short(b"x" * 1000)
    with pytest.raises(TransientStorageError, match="ended after 1000 of"):
        short.finish()
    plain = _PlainSink(memoryview(bytearray(10)), "src")
    with pytest.raises(TransientStorageError, match="more bytes"):
        plain(b"x" * 11)
    plain(b"x" * 4)
    with pytest.raises(TransientStorageError, match="ended after 4 of 10"):
        plain.finish()

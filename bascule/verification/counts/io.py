"""What every row counter reads through: a random-access reader, and its block stream.

Internal to `bascule.verification.counts`: the parsers raise `FormatError` for a file that
does not parse, and `counts.count_rows` turns it into a `RowCount` with its error set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

KiB = 1024
MiB = 1024 * KiB


class RangeReader(Protocol):
    """Random access to one object's bytes (plaintext: an encrypted one is decrypted).

    `read(offset, length)` is one ranged GET (or one decrypted range); it returns fewer bytes
    than asked only past the end. It raises what the storage or the decryption raises
    (ConnectorError, EncryptionError): the counters let those through."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class FormatError(Exception):
    """The object does not parse as the format it was counted as (a finding, not a crash)."""


def read_exact(reader: RangeReader, offset: int, length: int) -> bytes:
    """`length` bytes at `offset`; FormatError if the reader returns fewer (object shorter
    than its listed size, or changed while being read)."""
    data = reader.read(offset, length) if length > 0 else b""
    if len(data) != length:
        raise FormatError(
            f"read of {length} bytes at offset {offset} returned {len(data)}: the object is "
            f"shorter than its listed size ({reader.size} bytes) or changed while being read"
        )
    return data


def iter_blocks(reader: RangeReader, block_size: int) -> Iterator[bytes]:
    """The whole object, front to back, as blocks of at most `block_size` bytes (one read
    each). Raises ValueError if `block_size` < 1, FormatError on a short read."""
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, not {block_size}")
    offset = 0
    while offset < reader.size:
        length = min(block_size, reader.size - offset)
        yield read_exact(reader, offset, length)
        offset += length

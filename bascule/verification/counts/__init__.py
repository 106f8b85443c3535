"""Row counts for verification: pure, streaming, through a random-access reader.

The same functions count the source (plaintext, ranged GETs) and the target (decrypted
ranges of the age file), so both sides are counted by one rule and compared.

- ``parquet``: the footer's ``num_rows``. One read of the last 64 KiB; a second only when
  the footer is longer (an encrypted target adds the read of the age header: 3 at most).
- ``csv``: the records Python's csv module would read, over the whole object, block by
  block (`counts.csv`: dialect, encoding and fast paths), in the dataset's `CsvDialect`.
  The header row is not counted (unless the dialect says there is none); an empty file has
  0 rows.
- ``jsonl``: non-blank lines (``\\n``-separated), each of which must parse as JSON (UTF-8).
- ``sas7bdat``: the row count in the row-size subheader of the first metadata page(s)
  (`counts_sas`); no data page is read, compressed files included.
- ``binary``: no count (``rows=None``).

A file that does not parse as its format gives a `RowCount` whose `error` says why: a finding
for the report, never an exception. What the reader raises (ConnectorError on storage
errors, EncryptionError on a tampered or truncated target) goes through to the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from bascule.errors import UsageError
from bascule.verification.counts.csv import CsvDialect, count_csv_records
from bascule.verification.counts.io import (
    FormatError,
    KiB,
    MiB,
    RangeReader,
    iter_blocks,
    read_exact,
)
from bascule.verification.counts.sas import count_sas7bdat_rows

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "CsvDialect",
    "RangeReader",
    "RowCount",
    "count_rows",
    "detect_format",
]

FORMATS = ("auto", "parquet", "csv", "jsonl", "sas7bdat", "binary")
# Compressed files (.csv.gz, .parquet.zst...) end otherwise: binary, checked byte for byte.
EXTENSIONS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".sas7bdat": "sas7bdat",
}
PARQUET_TAIL_BYTES = 64 * KiB
MAX_JSON_LINE_BYTES = 64 * MiB
_JSON_BLANK = b" \t\r"


@dataclass(frozen=True)
class RowCount:
    """Rows of one object: `rows` None when not countable (binary) or when `error` is set
    (the file does not parse as `format`)."""

    rows: int | None
    format: str
    error: str | None = None


def detect_format(key: str, declared: str = "auto") -> str:
    """The format to count `key` as: `declared` unless it is ``auto``; then by the key's
    extension (case-insensitive: see `EXTENSIONS`), ``binary`` for any other.

    Raises UsageError if `declared` is not one of `FORMATS`."""
    _check_format(declared, FORMATS)
    if declared != "auto":
        return declared
    name = key.rsplit("/", 1)[-1].lower()
    for extension, fmt in EXTENSIONS.items():
        if name.endswith(extension):
            return fmt
    return "binary"


def count_rows(
    fmt: str,
    reader: RangeReader,
    *,
    block_size: int = 4 * MiB,
    csv: CsvDialect | None = None,
) -> RowCount:
    """Count the rows of the object behind `reader` as `fmt` (a concrete format, not auto).

    CSV and JSON lines are read whole, in reads of `block_size` bytes, holding about one
    block in memory; Parquet and SAS7BDAT read only their metadata. `csv` is the dialect of
    a CSV file (default: `CsvDialect()`, the delimiter sniffed). A malformed file gives
    ``RowCount(None, fmt, error)``. Raises UsageError for an unknown format (or ``auto``),
    ValueError if `block_size` < 1, and lets the reader's own errors through."""
    _check_format(fmt, FORMATS[1:])
    if fmt == "binary":
        return RowCount(None, fmt)
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, not {block_size}")
    try:
        if fmt == "csv":
            return RowCount(count_csv_rows(reader, block_size, csv), fmt)
        return RowCount(_COUNTERS[fmt](reader, block_size), fmt)
    except FormatError as exc:
        return RowCount(None, fmt, str(exc))


def _check_format(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt not in allowed:
        raise UsageError(
            f"unknown row-count format {fmt!r}: use one of {', '.join(allowed)}"
            + (" (resolve 'auto' with detect_format(key) first)" if fmt == "auto" else "")
        )


def count_parquet_rows(reader: RangeReader, block_size: int = 0) -> int:
    """``num_rows`` from the Parquet footer: at most 2 reads. Raises FormatError."""
    size = reader.size
    if size < 12:
        raise FormatError(f"{size} bytes is too small for a Parquet file (12 at least)")
    tail = read_exact(reader, size - min(size, PARQUET_TAIL_BYTES), min(size, PARQUET_TAIL_BYTES))
    if tail[-4:] == b"PARE":
        raise FormatError("the Parquet footer is encrypted (modular encryption): not countable")
    if tail[-4:] != b"PAR1":
        raise FormatError("no PAR1 magic at the end: not a Parquet file, or truncated")
    footer_length = int.from_bytes(tail[-8:-4], "little")
    if footer_length + 12 > size:
        raise FormatError(
            f"footer length {footer_length} does not fit in the file's {size} bytes: truncated"
        )
    missing = footer_length + 8 - len(tail)
    if missing > 0:
        tail = read_exact(reader, size - footer_length - 8, missing) + tail
    try:  # read_metadata parses the footer alone; offsets into row groups are not followed
        meta = pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-footer_length - 8 :]))
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(f"unreadable Parquet footer: {exc}") from None
    if meta.num_rows < 0:
        raise FormatError(f"the Parquet footer says {meta.num_rows} rows")
    return int(meta.num_rows)


def count_csv_rows(reader: RangeReader, block_size: int, dialect: CsvDialect | None = None) -> int:
    """Records, after the header row when the dialect has one (see `counts.csv`). Raises
    FormatError."""
    dialect = dialect or CsvDialect()
    records = count_csv_records(iter_blocks(reader, block_size), dialect)
    return max(0, records - 1) if dialect.header else records


def count_jsonl_rows(reader: RangeReader, block_size: int) -> int:
    """Non-blank lines, each parsed as JSON. Raises FormatError naming the first bad line."""
    return count_json_lines(iter_blocks(reader, block_size))


def count_json_lines(blocks: Iterable[bytes]) -> int:
    rows = 0
    number = 0
    carry = b""
    for block in blocks:
        lines = (carry + block).split(b"\n")
        carry = lines.pop()
        if len(carry) > MAX_JSON_LINE_BYTES:
            raise FormatError(f"line {number + len(lines) + 1} is longer than 64 MiB")
        for line in lines:
            number += 1
            rows += _json_row(line, number)
    return rows + _json_row(carry, number + 1)


def _json_row(line: bytes, number: int) -> int:
    """1 for a line holding one JSON value, 0 for a blank one; FormatError otherwise."""
    if not line.strip(_JSON_BLANK):
        return 0
    try:
        json.loads(line)
    except UnicodeDecodeError:
        raise FormatError(f"line {number} is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"line {number} is not JSON: {exc}") from None
    return 1


def _count_sas(reader: RangeReader, block_size: int) -> int:
    return count_sas7bdat_rows(reader)


_COUNTERS: dict[str, Callable[[RangeReader, int], int]] = {
    "parquet": count_parquet_rows,
    "jsonl": count_jsonl_rows,
    "sas7bdat": _count_sas,
}

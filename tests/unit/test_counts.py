"""Row counts: format detection, Parquet footers (with read counting, also through age),
JSON lines, binary, and the errors a malformed file gives."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bascule.age.stream import AgeRangeReader, X25519Identity, encrypt_stream
from bascule.errors import TransientStorageError, UsageError
from bascule.verification.counts import (
    FORMATS,
    PARQUET_TAIL_BYTES,
    RowCount,
    count_rows,
    detect_format,
)
from tests.unit.readers import CountingReader


class ShortReader(CountingReader):
    """Claims a larger size than it holds: an object shorter than listed."""

    @property
    def size(self) -> int:
        return len(self.data) + 100


# -- format detection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("dcir/2023/ER_PRS_F.parquet", "parquet"),
        ("a/B.PARQUET", "parquet"),
        ("extract.csv", "csv"),
        ("x/Y.Csv", "csv"),
        ("events.jsonl", "jsonl"),
        ("events.NDJSON", "jsonl"),
        ("sas/ir_ben_r.sas7bdat", "sas7bdat"),
        ("extract.csv.gz", "binary"),
        ("data.parquet.zst", "binary"),
        ("README", "binary"),
        ("dir.csv/file.bin", "binary"),
        ("archive.zip", "binary"),
    ],
)
def test_detect_format_auto_goes_by_extension(key: str, expected: str) -> None:
    assert detect_format(key) == expected
    assert detect_format(key, "auto") == expected


@pytest.mark.parametrize("declared", [f for f in FORMATS if f != "auto"])
def test_detect_format_declared_wins_over_extension(declared: str) -> None:
    assert detect_format("anything.csv", declared) == declared


def test_detect_format_rejects_an_unknown_format() -> None:
    with pytest.raises(UsageError, match="unknown row-count format 'xml'"):
        detect_format("a.xml", "xml")


@pytest.mark.parametrize("fmt", ["auto", "xml", ""])
def test_count_rows_rejects_auto_and_unknown_formats(fmt: str) -> None:
    with pytest.raises(UsageError, match="unknown row-count format"):
        count_rows(fmt, CountingReader(b"a\n"))


def test_count_rows_rejects_a_block_size_below_one() -> None:
    with pytest.raises(ValueError, match="block_size"):
        count_rows("csv", CountingReader(b"a\n1\n"), block_size=0)


def test_binary_has_no_count_and_reads_nothing() -> None:
    reader = CountingReader(b"\x00\x01" * 100)
    assert count_rows("binary", reader) == RowCount(None, "binary")
    assert reader.reads == []


# -- Parquet ----------------------------------------------------------------------------------


def _parquet(table: pa.Table, **kwargs: object) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kwargs)
    return sink.getvalue()


def _wide_table(rows: int, columns: int) -> pa.Table:
    return pa.table({f"column_{i:04d}": pa.array(range(rows), pa.int64()) for i in range(columns)})


PARQUET_CASES = {
    "one row group": lambda: _parquet(pa.table({"x": list(range(1000))})),
    "many row groups": lambda: _parquet(
        pa.table({"x": list(range(10_000)), "s": [str(i) for i in range(10_000)]}),
        row_group_size=777,
    ),
    "empty table": lambda: _parquet(pa.table({"x": pa.array([], pa.int64())})),
    "no columns": lambda: _parquet(pa.table({"x": [1, 2, 3]}).drop_columns(["x"])),
    "nulls, uncompressed": lambda: _parquet(
        pa.table({"x": [None, 1, None] * 500}), compression="none"
    ),
    # 600 columns x 40 row groups: a footer far larger than the 64 KiB first read
    "footer larger than the tail read": lambda: _parquet(_wide_table(400, 600), row_group_size=10),
}


@pytest.mark.parametrize("case", PARQUET_CASES)
def test_parquet_rows_equal_pyarrow_num_rows_in_at_most_two_reads(case: str) -> None:
    data = PARQUET_CASES[case]()
    expected = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    reader = CountingReader(data)
    assert count_rows("parquet", reader) == RowCount(expected, "parquet")
    footer_length = int.from_bytes(data[-8:-4], "little")
    assert len(reader.reads) == (1 if footer_length + 8 <= PARQUET_TAIL_BYTES else 2)
    first_byte_read = min(offset for offset, _ in reader.reads)
    assert first_byte_read == max(0, len(data) - max(PARQUET_TAIL_BYTES, footer_length + 8)), (
        "the tail only, or the footer when it is longer"
    )


def test_parquet_footer_larger_than_the_tail_read_is_the_two_read_case() -> None:
    data = PARQUET_CASES["footer larger than the tail read"]()
    assert int.from_bytes(data[-8:-4], "little") + 8 > PARQUET_TAIL_BYTES


def test_parquet_on_an_encrypted_target_takes_at_most_three_ranged_gets() -> None:
    identity = X25519Identity.generate()
    for case in ("many row groups", "footer larger than the tail read"):
        plain = PARQUET_CASES[case]()
        sink = io.BytesIO()
        encrypt_stream(io.BytesIO(plain), sink, [identity.recipient()])
        stored = CountingReader(sink.getvalue())
        decrypted = AgeRangeReader(stored.read, stored.size, [identity])
        expected = pq.ParquetFile(io.BytesIO(plain)).metadata.num_rows
        assert count_rows("parquet", decrypted) == RowCount(expected, "parquet")
        assert len(stored.reads) <= 3, (case, stored.reads)


def _valid_parquet() -> bytes:
    return PARQUET_CASES["one row group"]()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: b"", "too small"),
        (lambda d: b"PAR1PAR1", "too small"),
        (lambda d: d[:-1], "no PAR1 magic"),
        (lambda d: d[:-4] + b"PARE", "encrypted"),
        (lambda d: b"x" * 100, "no PAR1 magic"),
        (lambda d: d[:8] + (10**6).to_bytes(4, "little") + b"PAR1", "does not fit"),
        (
            lambda d: b"PAR1" + b"\xff" * 200 + (200).to_bytes(4, "little") + b"PAR1",
            "unreadable Parquet footer",
        ),
        (lambda d: d[:-30] + b"\xff" * 22 + d[-8:], "unreadable Parquet footer"),
    ],
)
def test_a_malformed_parquet_file_is_a_finding_not_an_exception(
    mangle: object, message: str
) -> None:
    data = mangle(_valid_parquet())  # type: ignore[operator]
    result = count_rows("parquet", CountingReader(data))
    assert result.rows is None and result.format == "parquet"
    assert result.error is not None and message in result.error, result.error


def test_parquet_shorter_than_listed_is_a_finding() -> None:
    result = count_rows("parquet", ShortReader(_valid_parquet()))
    assert result.rows is None and result.error and "shorter than its listed size" in result.error


# -- JSON lines -------------------------------------------------------------------------------


def _jsonl(values: list[object], sep: bytes = b"\n", final: bool = True) -> bytes:
    body = sep.join(json.dumps(v, ensure_ascii=False).encode() for v in values)
    return body + (sep if final and values else b"")


JSONL_VALUES: list[object] = [
    {"id": 1, "nom": "Élodie", "texte": "a\nb"},
    [1, 2, 3],
    "chaîne",
    None,
    {"nested": {"deep": [{"x": 1.5}]}},
    42,
]


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64, 4 << 20])
@pytest.mark.parametrize(
    "data",
    [
        _jsonl(JSONL_VALUES),
        _jsonl(JSONL_VALUES, final=False),
        _jsonl(JSONL_VALUES, sep=b"\r\n"),
        b"\n\n" + _jsonl(JSONL_VALUES).replace(b"\n", b"\n \t\n\n") + b"   ",
        b"\xef\xbb\xbf" + _jsonl(JSONL_VALUES),
        b"",
        b"\n \n",
    ],
)
def test_jsonl_counts_the_non_blank_lines(data: bytes, block_size: int) -> None:
    expected = sum(1 for line in data.split(b"\n") if line.strip(b" \t\r"))
    result = count_rows("jsonl", CountingReader(data), block_size=block_size)
    assert result == RowCount(expected, "jsonl")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}\n{"a": \n{"a": 3}\n', "line 2 is not JSON"),
        (b'{"a": 1}\n\n\n{oops}', "line 4 is not JSON"),
        (b'{"a": 1}\n{"a": 1} {"b": 2}\n', "line 2 is not JSON"),
        (b'{"a": "\xe9t\xe9"}\n', "line 1 is not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1 is not JSON"),
        (b"1\n2\n\x00\n", "line 3 is not JSON"),
    ],
    ids=["cut object", "bare word", "two objects", "Latin-1", "nested too deep", "NUL byte"],
)
def test_a_bad_jsonl_line_is_a_finding_with_its_line_number(data: bytes, message: str) -> None:
    # 1 KiB reads for the 200 KB line: 3-byte reads carry the line over ~70,000 times
    for block_size in (3 if len(data) <= 8 * 1024 else 1024, 4 << 20):
        result = count_rows("jsonl", CountingReader(data), block_size=block_size)
        assert result.rows is None and result.error is not None
        assert message in result.error, result.error


def test_jsonl_reads_in_blocks_of_the_given_size() -> None:
    data = _jsonl(JSONL_VALUES * 50)
    reader = CountingReader(data)
    count_rows("jsonl", reader, block_size=100)
    assert reader.reads == [(o, min(100, len(data) - o)) for o in range(0, len(data), 100)]


def test_jsonl_shorter_than_listed_is_a_finding() -> None:
    result = count_rows("jsonl", ShortReader(_jsonl(JSONL_VALUES)), block_size=5)
    assert result.rows is None and result.error and "shorter than its listed size" in result.error


def test_reader_errors_go_through() -> None:
    class Failing(CountingReader):
        def read(self, offset: int, length: int) -> bytes:
            raise TransientStorageError("storage said no", connector="s3://b", key="k")

    for fmt in ("parquet", "csv", "jsonl", "sas7bdat"):
        with pytest.raises(TransientStorageError, match="storage said no"):
            count_rows(fmt, Failing(b"x" * 2000))

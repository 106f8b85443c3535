"""SAS7BDAT row counts on real files (32/64-bit, little/big-endian, RLE/RDC compressed)
against the expected contents pandas ships with them; damaged files are findings."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from bascule.verification.counts import RowCount, count_rows
from bascule.verification.counts.sas import (
    FIRST_READ_BYTES,
    count_sas7bdat_rows,
    parse_header,
)
from tests.unit.readers import CountingReader

DATA = Path(__file__).resolve().parents[1] / "data" / "sas7bdat"

# file -> the CSV that pandas' tests hold as its content (see tests/data/sas7bdat/SOURCE.md)
EXPECTED_CONTENT = {
    "airline.sas7bdat": "airline.csv",
    "productsales.sas7bdat": "productsales.csv",
    "test3.sas7bdat": "test_sas7bdat_1.csv",
    "test5.sas7bdat": "test_sas7bdat_1.csv",
    "test7.sas7bdat": "test_sas7bdat_1.csv",
    "test9.sas7bdat": "test_sas7bdat_1.csv",
    "test10.sas7bdat": "test_sas7bdat_1.csv",
    "test12.sas7bdat": "test_sas7bdat_1.csv",
    "test14.sas7bdat": "test_sas7bdat_1.csv",
    "test16.sas7bdat": "test_sas7bdat_2.csv",
}


def expected_rows(sas_file: str) -> int:
    with (DATA / EXPECTED_CONTENT[sas_file]).open(newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def test_the_data_folder_holds_every_file_and_its_licence() -> None:
    names = {p.name for p in DATA.iterdir()}
    assert set(EXPECTED_CONTENT) | set(EXPECTED_CONTENT.values()) <= names
    assert {"SOURCE.md", "LICENSE-pandas-BSD-3-Clause.txt"} <= names


def test_the_files_cover_both_word_sizes_byte_orders_and_compressions() -> None:
    layouts = set()
    compressions = set()
    for name in EXPECTED_CONTENT:
        data = (DATA / name).read_bytes()
        layout = parse_header(data[:FIRST_READ_BYTES], len(data))
        layouts.add((layout.u64, layout.byteorder))
        compressions |= {c for c in (b"SASYZCRL", b"SASYZCR2") if c in data}
    assert layouts == {(False, "little"), (False, "big"), (True, "little"), (True, "big")}
    assert compressions == {b"SASYZCRL", b"SASYZCR2"}


@pytest.mark.parametrize("name", sorted(EXPECTED_CONTENT))
def test_sas_rows_equal_the_rows_of_the_expected_content(name: str) -> None:
    data = (DATA / name).read_bytes()
    reader = CountingReader(data)
    assert count_rows("sas7bdat", reader) == RowCount(expected_rows(name), "sas7bdat")
    assert reader.reads == [(0, min(len(data), FIRST_READ_BYTES))], "header and first page only"


@pytest.mark.parametrize("name", ["productsales.sas7bdat", "test14.sas7bdat", "test16.sas7bdat"])
def test_a_small_first_read_reads_the_first_page_once_more(name: str) -> None:
    data = (DATA / name).read_bytes()
    reader = CountingReader(data)
    assert count_sas7bdat_rows(reader, first_read_bytes=1024) == expected_rows(name)
    layout = parse_header(data, len(data))
    assert reader.reads == [(0, 1024), (layout.header_length, layout.page_size)]


def _damaged(name: str, how: str) -> bytes:
    data = bytearray((DATA / name).read_bytes())
    layout = parse_header(bytes(data), len(data))
    if how == "truncated in the header":
        return bytes(data[:200])
    if how == "truncated in the first page":
        return bytes(data[: layout.header_length + layout.page_size // 2])
    if how == "not SAS":
        data[20] ^= 0xFF
    if how == "no row-size subheader":
        for signature in (b"\xf7\xf7\xf7\xf7",):
            data[:] = data.replace(signature, b"\x00\x00\x00\x01")
    if how == "subheader pointer out of the page":
        start = layout.header_length + layout.page_header_size + 8
        data[start : start + layout.int_size] = (10**6).to_bytes(layout.int_size, layout.byteorder)
    return bytes(data)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("truncated in the header", "the header is cut at 200 bytes"),
        ("truncated in the first page", "the file is truncated"),
        ("not SAS", "not a SAS7BDAT file"),
        ("no row-size subheader", "no row-size subheader"),
        ("subheader pointer out of the page", "outside its"),
    ],
)
@pytest.mark.parametrize("name", ["airline.sas7bdat", "test14.sas7bdat"])
def test_a_damaged_sas_file_is_a_finding_not_an_exception(
    name: str, how: str, message: str
) -> None:
    result = count_rows("sas7bdat", CountingReader(_damaged(name, how)))
    assert result.rows is None and result.format == "sas7bdat"
    assert result.error is not None and message in result.error, result.error


def test_a_non_sas_file_is_a_finding() -> None:
    for data in (b"", b"x" * 10, io.BytesIO(b"PAR1" * 1000).getvalue()):
        result = count_rows("sas7bdat", CountingReader(data))
        assert result.rows is None and result.error and "not a SAS7BDAT file" in result.error

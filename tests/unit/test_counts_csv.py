"""CSV row counts against Python's csv module: a table of tricky files, generated files cut
into random block sizes, encodings, delimiter sniffing, and malformed files."""

from __future__ import annotations

import codecs
import csv
import io
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.verification.counts import CsvDialect, RowCount, count_rows
from bascule.verification.counts.csv import count_csv_records, sniff_delimiter
from tests.unit.readers import CountingReader

BLOCK_SIZES = (1, 2, 3, 5, 8, 64, 1000, 4 << 20)


def csv_module_rows(data: bytes, delimiter: str, encoding: str = "latin-1") -> int:
    """What csv.reader counts on the file opened as the csv docs say (newline=""), strict,
    minus the header row."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
    return max(0, sum(1 for _ in csv.reader(text, delimiter=delimiter, strict=True)) - 1)


def our_rows(data: bytes, block_size: int) -> RowCount:
    return count_rows("csv", CountingReader(data), block_size=block_size)


def small_block(data: bytes) -> int:
    """A block size that cuts `data` into many blocks: 3 bytes, or 1 KiB for files over
    8 KiB (a line spanning blocks is carried over whole at each read, so 3-byte reads of a
    128 KiB line cost seconds and test nothing more than 1 KiB reads do)."""
    return 3 if len(data) <= 8 * 1024 else 1024


LONG_QUOTED = b'"' + b"x;\n" * 30_000 + b'"'  # ~90 KiB: longer than one decoded batch

# (name, file, delimiter the file uses, encoding csv.reader should open it with)
TRICKY: list[tuple[str, bytes, str, str]] = [
    ("empty file", b"", ",", "latin-1"),
    ("header only, no newline", b"a,b,c", ",", "latin-1"),
    ("header only", b"a,b,c\n", ",", "latin-1"),
    ("missing final newline", b"a,b\n1,2\n3,4", ",", "latin-1"),
    ("CRLF", b"a,b\r\n1,2\r\n3,4\r\n", ",", "latin-1"),
    ("lone CR line ends", b"a,b\r1,2\r3,4\r", ",", "latin-1"),
    ("mixed line ends", b"a,b\r\n1,2\n3,4\r5,6\r\n\n7,8", ",", "latin-1"),
    ("quoted LF", b'a,b\n"x\ny",1\n2,"p\nq\nr"\n', ",", "latin-1"),
    ("quoted CRLF and CR", b'a,b\r\n"x\r\ny",1\r\n"p\rq",2\r\n', ",", "latin-1"),
    ("quoted newline at end, no final newline", b'a\n1\n"x\ny"', ",", "latin-1"),
    ("doubled quotes", b'a,b\n"he said ""hi""",1\n"""",""\n', ",", "latin-1"),
    ("quote inside an unquoted field", b'a,b\nab"c,d\nx"\ny,z\n', ",", "latin-1"),
    ("header with a quoted newline", b'"col\none",b\n1,2\n', ",", "latin-1"),
    ("blank lines inside and at the end", b"a,b\n1,2\n\n3,4\n\n\n", ",", "latin-1"),
    ("blank CRLF lines", b"a\r\n\r\n1\r\n\r\n", ",", "latin-1"),
    ("UTF-8 BOM and quoted header", b'\xef\xbb\xbf"a\nb",c\n1,2\n', ",", "utf-8-sig"),
    ("UTF-8 BOM, plain", b"\xef\xbb\xbfa;b\n1;2\n", ";", "utf-8-sig"),
    ("Latin-1 accents", b'nom;ville\n\xc9lodie;S\xe8te\n"Ren\xe9\n";\xc9vry\n', ";", "latin-1"),
    ("UTF-8 accents", 'nom;ville\nÉlodie;Sète\n"René\n";Évry\n'.encode(), ";", "utf-8"),
    ("semicolon, quoted ; and newline", b'a;b\n"x;y\nz";1\n2;"3;4"\n', ";", "latin-1"),
    ("delimiter decides the quote", b'a;b\nx;"y\nz"\n', ";", "latin-1"),
    ("tab", b'a\tb\n"1\n2"\t3\n', "\t", "latin-1"),
    ("pipe", b'a|b|c\n1|"2|\n3"|4\n', "|", "latin-1"),
    ("empty quoted fields", b'a,b\n"",""\n""\n', ",", "latin-1"),
    ("quoted field ends at EOF", b'a\n"x"', ",", "latin-1"),
    ("long quoted field", b"a;b\n" + LONG_QUOTED + b";1\n2;3\n", ";", "latin-1"),
    (
        "quoted lines then a plain run",
        b"a,b\n" + b'"q",1\n' * 500 + b"p,2\n" * 500 + b'"r\ns",3\n' * 100,
        ",",
        "latin-1",
    ),
    (
        "quoted CRLF lines of many lengths: batches end next to a CRLF",
        b"a,b\r\n" + b"".join(b'"q%d",%s\r\n' % (i, b"x" * (i % 7)) for i in range(3000)),
        ",",
        "latin-1",
    ),
    ("NEL and form feed are not line ends", b"a,b\n1\x85,2\x0c\n3\x0b,4\n", ",", "latin-1"),
]


@pytest.mark.parametrize(
    ("name", "data", "delimiter", "encoding"), TRICKY, ids=[c[0] for c in TRICKY]
)
def test_tricky_csv_counts_as_the_csv_module_does(
    name: str, data: bytes, delimiter: str, encoding: str
) -> None:
    expected = csv_module_rows(data, delimiter, encoding)
    for block_size in BLOCK_SIZES:
        assert our_rows(data, block_size) == RowCount(expected, "csv"), (name, block_size)


def test_the_tricky_table_is_not_trivial() -> None:
    """The oracle gives different answers from naive newline counting on most cases."""
    naive_differs = [
        name
        for name, data, delimiter, encoding in TRICKY
        if csv_module_rows(data, delimiter, encoding) != max(0, data.count(b"\n") - 1)
    ]
    assert len(naive_differs) >= 12, naive_differs


def test_the_count_does_not_depend_on_the_encoding() -> None:
    text = "nom;commune;note\n" + '"Hélène\nAçaï";Besançon;"très ""bien"""\nZoé;Étienne;ok\n' * 50
    counts = {
        encoding: our_rows(text.encode(encoding), 7)
        for encoding in ("utf-8", "latin-1", "cp1252", "utf-8-sig")
    }
    assert set(counts.values()) == {RowCount(100, "csv")}, counts


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"a;b;c\n1,5;2,5;3\n", ";"),  # French decimals in the data do not count
        (b"a,b,c\n", ","),
        (b"a\tb\tc\r\n", "\t"),
        (b"a|b\n", "|"),
        (b'"x;y;z",b,c\n', ","),  # inside quotes does not count
        (b"single\n", ","),
        (b"", ","),
        (b"a,b;c\n", ","),  # a tie goes to the comma
        (b"a;b;c", ";"),  # no newline at all
    ],
)
def test_sniff_delimiter(head: bytes, expected: str) -> None:
    assert sniff_delimiter(head) == expected


def test_a_semicolon_file_counts_differently_when_read_with_commas() -> None:
    """The sniffed delimiter matters: read with ',' this file has one row more."""
    data = b'a;b\nx;"y\nz"\n'
    assert sniff_delimiter(data) == ";"
    assert csv_module_rows(data, ";") == 1
    assert csv_module_rows(data, ",") == 2
    assert our_rows(data, 3) == RowCount(1, "csv")


# -- generated files --------------------------------------------------------------------------

FIELD_PIECES = [*'ab é;,"\n\r\t|', "\r\n", '""', "1"]
FIELDS = st.lists(st.sampled_from(FIELD_PIECES), max_size=8).map("".join)


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, int]:
    """A file written by csv.writer and the number of data rows written."""
    delimiter = draw(st.sampled_from([";", ",", "\t"]))
    columns = draw(st.integers(2, 5))
    rows = draw(
        st.lists(
            st.one_of(st.lists(FIELDS, min_size=columns, max_size=columns), st.just([])),
            max_size=25,
        )
    )
    sink = io.StringIO(newline="")
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    quoting: Literal[0, 1] = csv.QUOTE_ALL if draw(st.booleans()) else csv.QUOTE_MINIMAL
    if terminator == "\n" and quoting == csv.QUOTE_MINIMAL:
        # csv.writer quotes a field for the characters of its own line terminator only: a
        # lone CR would go out unquoted and csv.reader would not read the row back
        rows = [[field.replace("\r", "\r\n") for field in row] for row in rows]
    writer = csv.writer(sink, delimiter=delimiter, lineterminator=terminator, quoting=quoting)
    writer.writerow([f"col{i}" for i in range(columns)])
    writer.writerows(rows)
    text = sink.getvalue()
    if rows and rows[-1] and draw(st.booleans()):  # no final newline
        text = text[: -len(terminator)]
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-8-sig"]))
    return text.encode(encoding), len(rows)


@settings(max_examples=300, deadline=None)
@given(csv_files(), st.one_of(st.integers(1, 40), st.sampled_from([4096, 4 << 20])))
def test_generated_csv_counts_the_rows_written(file: tuple[bytes, int], block_size: int) -> None:
    data, written = file
    plain = data.removeprefix(codecs.BOM_UTF8)
    assert csv_module_rows(plain, sniff_delimiter(plain)) == written  # the oracle agrees
    assert our_rows(data, block_size) == RowCount(written, "csv")


def test_reads_are_consecutive_blocks_of_the_given_size() -> None:
    data = b"a;b\n" + b'1;"x\ny"\n' * 300
    reader = CountingReader(data)
    count_rows("csv", reader, block_size=100)
    assert reader.reads == [(o, min(100, len(data) - o)) for o in range(0, len(data), 100)]


# -- malformed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'a,b\n"open,1\n2,3\n', "unexpected end of data"),
        (b'a,b\n1,"open', "unexpected end of data"),
        (b'a,b\n"x"y,1\n', "',' expected after '\"'"),
        (b'a;b\n"x" ;1\n', "';' expected after '\"'"),
        (b"a,b\n1,\x002\n", "NUL byte at byte 6"),
        (b"a,b\n" + b"1,2\n" * 1000 + b"\x00", "NUL byte at byte 4004"),
        ("a,b\n1,2\n".encode("utf-16"), "UTF-16"),
    ],
    ids=["quote open at a line end", "quote open at the end", "character after a quote",
         "blank after a quote", "NUL byte", "NUL byte after 4 KiB", "UTF-16"],
)  # fmt: skip
def test_a_malformed_csv_is_a_finding_not_an_exception(data: bytes, message: str) -> None:
    for block_size in (small_block(data), 4 << 20):
        result = our_rows(data, block_size)
        assert result.rows is None and result.format == "csv"
        assert result.error is not None and message in result.error, result.error


def test_the_malformed_table_matches_the_csv_module() -> None:
    """Each quote error above is one csv.reader raises too (NUL bytes it would accept)."""
    for data in (b'a,b\n"open,1\n', b'a,b\n"x"y,1\n'):
        with pytest.raises(csv.Error):
            csv_module_rows(data, ",")


def test_a_line_of_any_length_counts() -> None:
    line = b"x" * (5 << 20)
    assert our_rows(b"a,b\n" + line + b"\n" + line, 64 * 1024) == RowCount(2, "csv")


def test_csv_shorter_than_listed_is_a_finding() -> None:
    class Short(CountingReader):
        @property
        def size(self) -> int:
            return len(self.data) + 1

    result = count_rows("csv", Short(b"a\n1\n2\n"), block_size=2)
    assert result.rows is None and result.error and "shorter than its listed size" in result.error


# -- long quoted fields and declared dialects ---------------------------------------------------

DICTIONARY = Path(__file__).resolve().parents[1] / "data" / "csv" / "snds_dictionary_latin1.csv"
SNDS = CsvDialect(delimiter=";", encoding="latin-1")


def csv_module_unbounded(data: bytes, delimiter: str, encoding: str, quote: str = '"') -> int:
    """`csv_module_rows` with no limit on the size of a field (128 KiB by default)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
        reader = csv.reader(text, delimiter=delimiter, quotechar=quote, strict=True)
        return max(0, sum(1 for _ in reader) - 1)
    finally:
        csv.field_size_limit(limit)


def dialect_rows(data: bytes, dialect: CsvDialect, block_size: int = 4 << 20) -> RowCount:
    return count_rows("csv", CountingReader(data), block_size=block_size, csv=dialect)


def long_field_file() -> bytes:
    """The dictionary, then a row whose last field holds every rule text of the dictionary,
    over and over, past 128 KiB: line ends, ';' and doubled quotes included."""
    rows = list(csv.reader(io.StringIO(DICTIONARY.read_bytes().decode("latin-1"), newline=""),
                           delimiter=";"))  # fmt: skip
    rules = "\r\n".join(r[5] for r in rows[1:] if r[5]) + '\r\n"fin"; ok\r\n'
    text = rules * (1 + (200 * 1024) // len(rules))
    sink = io.StringIO(newline="")
    writer = csv.writer(sink, delimiter=";", lineterminator="\r\n")
    writer.writerows([*rows, ["IR_BEN_R", "BEN_NOTES", "string", "", "notes", text], ["a", "b"]])
    return sink.getvalue().encode("latin-1")


def test_the_snds_dictionary_counts_with_its_declared_dialect() -> None:
    data = DICTIONARY.read_bytes()
    assert data.count(b"\n") - 1 == 71  # line ends, header excluded: quoted ones are not rows
    expected = csv_module_rows(data, ";")
    assert expected == 67
    for block_size in (1, 7, 1024, 4 << 20):
        assert dialect_rows(data, SNDS, block_size) == RowCount(67, "csv")
    assert dialect_rows(data, CsvDialect(delimiter=";", header=False)) == RowCount(68, "csv")


def test_the_declared_delimiter_is_the_one_used() -> None:
    """Read with ',' the same file is counted by another rule (what the setting is for)."""
    data = DICTIONARY.read_bytes()
    as_commas = dialect_rows(data, CsvDialect(delimiter=","))
    assert as_commas != RowCount(67, "csv")
    assert as_commas == RowCount(csv_module_rows(data, ","), "csv")


def test_a_file_that_is_not_in_the_declared_encoding_is_a_finding() -> None:
    data = DICTIONARY.read_bytes()
    first = next(i for i, b in enumerate(data) if b > 127)
    result = dialect_rows(data, CsvDialect(delimiter=";", encoding="utf-8"), 64)
    assert result.rows is None and result.error is not None
    assert f"byte {first} is not utf-8 text" in result.error and "csv.encoding" in result.error
    as_utf8 = data.decode("latin-1").encode("utf-8")
    assert dialect_rows(as_utf8, CsvDialect(delimiter=";", encoding="utf-8"), 5).rows == 67


def test_a_quoted_field_over_128_kib_with_line_ends_counts() -> None:
    data = long_field_file()
    assert len(data) > 200 * 1024
    expected = csv_module_unbounded(data, ";", "latin-1")
    assert expected == 69
    with pytest.raises(csv.Error, match="field larger than field limit"):
        csv_module_rows(data, ";")  # what counted it unreadable before
    for block_size in (1000, 64 * 1024, 4 << 20):
        assert dialect_rows(data, SNDS, block_size) == RowCount(expected, "csv")
    assert our_rows(data, 4096) == RowCount(expected, "csv")  # the sniffed ';' as well


def test_a_quoted_field_is_never_held_whole() -> None:
    """A 32 MiB quoted field streamed in 64 KiB blocks: memory stays near one block."""
    piece = b'ligne "" ; suite\r\n' * 3500  # about 64 KiB

    def blocks() -> Iterator[bytes]:
        yield b'table;notes\r\nT;"'
        for _ in range(512):
            yield piece
        yield b'"\r\nU;fin\r\n'

    tracemalloc.start()
    try:
        records = count_csv_records(blocks(), CsvDialect(delimiter=";", encoding="cp1252"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert records == 3
    assert peak < 1 << 20, peak


def test_another_quote_character() -> None:
    data = b"a|b\n'x|\ny'|1\n'it''s'|2\n"
    expected = csv_module_unbounded(data, "|", "latin-1", quote="'")
    assert expected == 2
    assert dialect_rows(data, CsvDialect(delimiter="|", quote="'"), 3) == RowCount(2, "csv")
    assert dialect_rows(data, CsvDialect(delimiter="|"), 3) == RowCount(3, "csv")


# Found by the property test above on Python 3.11.2 (Debian 12's), whose possessive
# quantifiers match wrongly (CPython gh-106052, fixed in 3.11.5): these hold on every 3.11.
@pytest.mark.parametrize(
    ("data", "block_size"),
    [
        (b'col0;col1\r\n;\r\n;\r\n;\r\n;\r\n;\r\n;\r\n;\r\n"aaaa""\n";\r\n', 8),
        (b'a;b\n"x""\n";\n"y"\n', 4),
        (b'a;b\n"x""\n";\n"y"\n', 4 << 20),
    ],
)
def test_a_doubled_quote_before_a_line_end_inside_a_field_counts(
    data: bytes, block_size: int
) -> None:
    expected = csv_module_rows(data, ";")
    assert our_rows(data, block_size) == RowCount(expected, "csv")


@pytest.mark.parametrize("line", [b'""";\n', b'""";\r\n', b'a;""";\n'])
def test_a_quoted_field_left_open_is_never_a_record(line: bytes) -> None:
    with pytest.raises(csv.Error):
        csv_module_rows(b"a;b\n" + line, ";")
    counted = our_rows(b"a;b\n" + line, 4 << 20)
    assert counted.rows is None
    assert counted.error is not None and "never closed" in counted.error

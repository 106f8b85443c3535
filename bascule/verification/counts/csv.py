"""CSV record counting, streamed block by block, in memory bounded by one block.

Contract: `count_csv_records(blocks, dialect)` returns exactly ``len(list(csv.reader(f,
delimiter=d, quotechar=q, strict=True)))`` with ``csv.field_size_limit`` unbounded, for ``f
= open(path, newline="", encoding="latin-1")`` (a leading UTF-8 byte-order mark dropped
first), `d` and `q` the dataset's `dialect` (the delimiter sniffed from the first line when
the dialect names none, `sniff_delimiter`), header row included (the caller drops it);
FormatError where that csv.reader raises csv.Error, on a NUL byte, and on bytes that are not
text in the dialect's encoding when it names one.

Dialect assumptions, and why:
- the quote character (``"`` unless the dialect says otherwise) opens a quoted field only at
  the start of a field, and is doubled to stand for itself (RFC 4180, what Excel, SAS and
  pandas write); no escape character; strict, so a stray character after a closing quote or
  a quote left open at the end of the file is an error, not a silently different count.
- records end at CRLF, LF or a lone CR, as csv.reader sees them; a blank line is a record
  (csv.reader yields ``[]`` for it); a missing final newline still ends the last record.
- delimiter, when the dialect names none: the most frequent of ``,`` ``;`` TAB ``|`` outside
  quotes on the first line (SNDS extracts often use ``;``), ``,`` when none appears.
- bytes, not text: the delimiter and the quote are single bytes in the file's encoding, and
  no byte of a UTF-8 (or Latin-1, cp1252...) character equals another character's byte, so
  the count never needs to decode. A dialect that names an encoding has every byte checked
  against it (a finding when it does not decode); without one, any ASCII-compatible
  encoding counts the same. A UTF-8 byte-order mark at the start is skipped. UTF-16 and
  UTF-32 are not supported: their NUL bytes are reported.

How: a state machine over the bytes (csv.reader's own states), which carries its state from
one block to the next, so no field, however long, is ever held: a quoted field is crossed
with ``bytes.find`` of the quote. Between records, a run of whole lines with no quote in
them is counted with ``bytes.count`` (each such line is exactly one record); a record with a
quote is matched whole by one regular expression when it lies in the block, else walked
field by field.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bascule.verification.counts.io import FormatError, KiB

SNIFF_BYTES = 64 * KiB  # the first line is looked for this far, to sniff the delimiter
DELIMITERS = (",", ";", "\t", "|")
_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")
_CR, _LF = 13, 10

# csv.reader's states (Modules/_csv.c), the ones a strict reader without escapes reaches
START_RECORD, START_FIELD, IN_FIELD, IN_QUOTED, AFTER_QUOTE = range(5)


@dataclass(frozen=True)
class CsvDialect:
    """How a dataset's CSV files are written (the `csv:` key of a dataset).

    `delimiter` None: sniffed from each file's first line. `encoding` None: the bytes are
    not checked (any ASCII-compatible encoding). `header`: the first record is a header,
    not a row. The delimiter and the quote must each be one byte in the encoding (the
    config checks it)."""

    delimiter: str | None = None
    quote: str = '"'
    encoding: str | None = None
    header: bool = True


def sniff_delimiter(head: bytes, quote: bytes = b'"') -> str:
    """The delimiter of a CSV whose first bytes are `head`: the most frequent of
    `DELIMITERS` outside quotes on the first line, the earliest listed on a tie, ``,`` if
    none appears."""
    match = _EOL.search(head)
    line = head[: match.start()] if match else head
    unquoted = b"".join(line.split(quote)[::2])
    counts = [unquoted.count(d.encode()) for d in DELIMITERS]
    best = max(range(len(DELIMITERS)), key=lambda i: (counts[i], -i))
    return DELIMITERS[best] if counts[best] else ","


def _as_byte(char: str, encoding: str | None) -> bytes:
    raw = char.encode(encoding or "ascii")
    if len(raw) != 1:
        raise ValueError(f"{char!r} is not one byte in {encoding or 'ASCII'}")
    return raw


class _Scanner:
    """csv.reader's record count over a stream of byte blocks (see the module docstring)."""

    def __init__(self, delimiter: bytes, quote: bytes) -> None:
        self.records = 0
        self.state = START_RECORD
        self._d, self._q = delimiter, quote
        self._dq = ord(delimiter), ord(quote)
        self._cr = False  # the last byte was a CR that ended a record: an LF next joins it
        self._base = 0  # file offset of the block being scanned
        self._opened = 0  # file offset of the quote that opened the current quoted field
        d, q = re.escape(delimiter), re.escape(quote)
        # One whole record from its start, its repeats in atomic groups: a record that does
        # not match fails fast and is walked field by field, which finds what is wrong with
        # it. Atomic groups, not possessive quantifiers (`x*+`), which match wrongly before
        # Python 3.11.5 (CPython gh-106052; Debian 12 ships 3.11.2): there the line `""";`
        # matched as a whole record where csv.reader sees a quoted field left open, and
        # valid files were counted as malformed.
        field = b"(?>(?:%s(?>[^%s]*)%s)+)|[^%s%s\r\n](?>[^%s\r\n]*)|" % (q, q, q, q, d, d)
        self._record = re.compile(b"(?>(?:(?:%s)%s)*)(?:%s)(?:\r\n|\r|\n)" % (field, d, field))
        self._field_end = re.compile(b"[%s\r\n]" % d)

    def scan(self, block: bytes) -> None:
        i, n = 0, len(block)
        while i < n:
            if self.state == START_RECORD:
                i = self._between_records(block, i)
            elif self.state == IN_QUOTED:
                i = self._in_quoted(block, i)
            elif self.state == IN_FIELD:
                i = self._in_field(block, i)
            else:
                i = self._at(block, i)
        self._base += n

    def end(self) -> int:
        """The record count once every block is scanned. FormatError for a quoted field
        left open at the end of the file."""
        if self.state == IN_QUOTED:
            d = chr(self._dq[0])
            raise FormatError(
                f"malformed CSV near byte {self._base} (delimiter {d!r}): unexpected end of "
                f"data: the quoted field opened at byte {self._opened} is never closed"
            )
        if self.state != START_RECORD:
            self.records += 1  # a last record without a line end
            self.state = START_RECORD
        return self.records

    def _end_record(self, byte: int) -> None:
        self.records += 1
        self.state = START_RECORD
        self._cr = byte == _CR

    def _between_records(self, block: bytes, i: int) -> int:
        """At the start of a record: skip the LF of a CRLF cut by the block's end, count the
        whole quote-free lines before the next quote, match the next record whole."""
        if self._cr:
            self._cr = False
            if block[i] == _LF:
                return i + 1
        quote = block.find(self._q, i)
        stop = quote if quote >= 0 else len(block)
        last = max(block.rfind(b"\n", i, stop), block.rfind(b"\r", i, stop))
        if last >= 0:  # whole lines without a quote: one record each
            end = last + 1
            self.records += (
                block.count(b"\n", i, end)
                + block.count(b"\r", i, end)
                - block.count(b"\r\n", i, end)
            )
            self._cr = block[last] == _CR
            return end
        if quote < 0:  # the rest of the block is the start of a record without a quote
            self.state = START_FIELD if block[-1] == self._dq[0] else IN_FIELD
            return len(block)
        match = self._record.match(block, i)
        if match is None:
            self.state = START_FIELD  # walked field by field from here
            return i
        end = match.end()
        self.records += 1
        self._cr = block[end - 1] == _CR
        return end

    def _in_quoted(self, block: bytes, i: int) -> int:
        close = block.find(self._q, i)
        if close < 0:
            return len(block)  # the field goes on in the next block: nothing is kept
        self.state = AFTER_QUOTE
        return close + 1

    def _in_field(self, block: bytes, i: int) -> int:
        match = self._field_end.search(block, i)
        if match is None:
            return len(block)
        at = match.start()
        if block[at] == self._dq[0]:
            self.state = START_FIELD
        else:
            self._end_record(block[at])
        return at + 1

    def _at(self, block: bytes, i: int) -> int:
        """One byte at the start of a field, or after the quote that closed a field."""
        byte = block[i]
        delimiter, quote = self._dq
        if byte in (_CR, _LF):
            self._end_record(byte)
        elif byte == delimiter:
            self.state = START_FIELD
        elif byte == quote:
            if self.state == START_FIELD:
                self._opened = self._base + i
            self.state = IN_QUOTED  # opens a field, or a doubled quote inside one
        elif self.state == START_FIELD:
            self.state = IN_FIELD
        else:
            d, q = chr(delimiter), chr(quote)
            raise FormatError(
                f"malformed CSV near byte {self._base + i} (delimiter {d!r}): '{d}' expected "
                f"after '{q}' (a closing quote must be followed by the delimiter or a line end)"
            )
        return i + 1


class _Blocks:
    """The file's blocks as the scanner must see them: the UTF-8 byte-order mark dropped,
    NUL bytes refused, and (when the dialect names an encoding) each byte checked."""

    def __init__(self, blocks: Iterable[bytes], encoding: str | None) -> None:
        self._blocks = iter(blocks)
        self._offset = 0  # file offset of the next byte handed out
        self._encoding = encoding
        self._decoder = _decoder(encoding)
        self._pending: list[bytes] = []

    def head(self) -> bytes:
        """The first bytes of the file: through its first line end, or its first
        `SNIFF_BYTES` (the whole file if shorter); they are handed out again after."""
        head = b""
        while len(head) < SNIFF_BYTES:
            block = self._pull()
            if block is None:
                break
            self._pending.append(block)
            head += block
            if _EOL.search(block):
                break
        return head

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        block = self._pending.pop(0) if self._pending else self._pull()
        if block is None:
            raise StopIteration
        return block

    def _pull(self) -> bytes | None:
        """The next block of the file (None at its end), checked."""
        block = self._first() if self._offset == 0 else next(self._blocks, None)
        if block is None:
            self._check_text(b"", final=True)
            return None
        nul = block.find(b"\x00")
        if nul >= 0:
            raise FormatError(
                f"NUL byte at byte {self._offset + nul}: not a CSV text file (binary, or a "
                "UTF-16/UTF-32 encoding, which are not supported)"
            )
        self._check_text(block)
        self._offset += len(block)
        return block

    def _first(self) -> bytes | None:
        """The first non-empty block, without a UTF-8 byte-order mark (csv.reader on
        utf-8-sig text never sees it); blocks shorter than the mark are joined first."""
        block = b""
        while len(block) < len(_BOM):
            more = next(self._blocks, None)
            if more is None:
                break
            block += more
        if block.startswith(_BOM):
            self._offset = len(_BOM)
            block = block[len(_BOM) :]
        while not block:
            more = next(self._blocks, None)
            if more is None:
                return None
            block = more
        return block

    def _check_text(self, block: bytes, final: bool = False) -> None:
        if self._decoder is None:
            return
        held = len(self._decoder.getstate()[0])  # bytes of a character cut by the last block
        try:
            self._decoder.decode(block, final)
        except UnicodeDecodeError as exc:
            raise FormatError(
                f"byte {self._offset - held + exc.start} is not {self._encoding} text "
                f"({exc.reason}): the dataset's csv.encoding does not match this file"
            ) from None


def _decoder(encoding: str | None) -> codecs.IncrementalDecoder | None:
    """A strict decoder for `encoding`; None when there is nothing to check (no encoding,
    or one, like Latin-1, that every byte sequence is text in)."""
    if encoding is None or codecs.lookup(encoding).name == "iso8859-1":
        return None
    return codecs.getincrementaldecoder(encoding)(errors="strict")


def count_csv_records(blocks: Iterable[bytes], dialect: CsvDialect | None = None) -> int:
    """Records in the CSV file made of `blocks`, header row included (see the module's
    contract). Raises FormatError for malformed CSV: a quote left open at the end, a
    character after a closing quote other than the delimiter or a line end, a NUL byte,
    bytes that are not text in the dialect's encoding."""
    dialect = dialect or CsvDialect()
    feed = _Blocks(blocks, dialect.encoding)
    quote = _as_byte(dialect.quote, dialect.encoding)
    delimiter = dialect.delimiter or sniff_delimiter(feed.head(), quote)
    scanner = _Scanner(_as_byte(delimiter, dialect.encoding), quote)
    for block in feed:
        scanner.scan(block)
    return scanner.end()

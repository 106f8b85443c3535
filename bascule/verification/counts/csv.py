"""CSV record counting: Python's csv module, streamed block by block, with a quote-free fast path.

Contract: `count_csv_records(blocks)` returns exactly ``len(list(csv.reader(f, delimiter=d,
strict=True)))`` for ``f = open(path, newline="", encoding="latin-1")`` (a leading UTF-8
byte-order mark dropped first) and the delimiter `d` sniffed from the first line
(`sniff_delimiter`), header row included (the caller drops it); FormatError where that
csv.reader raises csv.Error, and on a NUL byte or an over-long line.

Dialect assumptions, and why:
- quote character ``"``, doubled to escape it (RFC 4180, what Excel, SAS and pandas write);
  no escape character; strict mode, so a stray character after a closing quote or a quote
  left open at the end of the file is an error, not a silently different count.
- records end at CRLF, LF or a lone CR, as csv.reader sees them; a blank line is a record
  (csv.reader yields ``[]`` for it); a missing final newline still ends the last record.
- delimiter: the most frequent of ``,`` ``;`` TAB ``|`` outside quotes on the first line
  (SNDS extracts often use ``;``), ``,`` when none appears. It matters because a quote opens
  a quoted field only at the start of a field.
- bytes, not text: blocks are read as Latin-1, one character per byte. Every character the
  parser acts on is ASCII and no byte of a UTF-8 (or Latin-1, cp1252...) multi-byte character
  is, so the count does not depend on the file's encoding and never fails on decoding. A UTF-8
  byte-order mark at the start is skipped. UTF-16 and UTF-32 are not supported: their NUL
  bytes are reported.
- a NUL byte is an error (a binary file, or a text encoding we do not read).

Fast path: between records, a run of whole lines with no ``"`` in them is counted with
``bytes.count`` (each such line is exactly one record for csv.reader); only lines holding a
quote, and the records they start, go through csv.reader.

Bounds: memory holds one block, plus one line (at most `MAX_LINE_BYTES`, else an error). A
quoted field longer than ``csv.field_size_limit()`` (128 KiB unless the process changed it)
is reported as an error by csv.reader; unquoted fields are only bounded by the line limit.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

from bascule.verification.counts.io import FormatError, KiB, MiB

MAX_LINE_BYTES = 64 * MiB
MIN_BATCH_BYTES = 1 * KiB
MAX_BATCH_BYTES = 64 * KiB
DELIMITERS = (",", ";", "\t", "|")
_BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")


def sniff_delimiter(head: bytes) -> str:
    """The delimiter of a CSV whose first bytes are `head`: the most frequent of
    `DELIMITERS` outside quotes on the first line, the earliest listed on a tie, ``,`` if
    none appears."""
    match = _EOL.search(head)
    line = head[: match.start()] if match else head
    unquoted = b"".join(line.split(b'"')[::2])
    counts = [unquoted.count(d.encode()) for d in DELIMITERS]
    best = max(range(len(DELIMITERS)), key=lambda i: (counts[i], -i))
    return DELIMITERS[best] if counts[best] else ","


class _LineFeed:
    """Lines for csv.reader, cut from byte blocks (newline="" semantics: CRLF, LF, lone CR).

    While `between_records` is set (the reader stands at the start of a record), runs of
    lines holding no quote are counted into `skipped` and never reach the reader. Lines that
    do reach it are decoded in batches (1 KiB after a quote-free run, doubling up to 64 KiB while
    every line goes to the reader) and split by io.StringIO."""

    def __init__(self, blocks: Iterable[bytes]) -> None:
        self._blocks = iter(blocks)
        self._buf = b""
        self._pos = 0
        self._base = 0  # file offset of _buf[0], for messages
        self._eof = False
        self._first = True
        self._batch = MIN_BATCH_BYTES
        self.between_records = True
        self.skipped = 0

    @property
    def offset(self) -> int:
        """File offset of the next byte not yet handed out or counted."""
        return self._base + self._pos

    def head(self) -> bytes:
        """The first bytes of the file: through its first line end, or its first
        `MAX_BATCH_BYTES` (or the whole file, if shorter). Call before anything is read."""
        while not self._eof and len(self._buf) < MAX_BATCH_BYTES and not _EOL.search(self._buf):
            self._refill()
        return self._buf

    def lines(self) -> Iterator[str]:
        """Every line the reader must see, in order, Latin-1 decoded."""
        while True:
            if self.between_records:
                self._skip_plain_lines()
            end = self._batch_end()
            if end < 0:
                return
            text = self._buf[self._pos : end].decode("latin-1")
            for line in io.StringIO(text, newline=""):
                if self.between_records and '"' not in line:
                    self._batch = MIN_BATCH_BYTES  # quotes are sparse here: decode little
                    break  # back to counting quote-free lines with bytes.count
                self.between_records = False
                self._pos += len(line)
                yield line
            else:
                self._batch = min(2 * self._batch, MAX_BATCH_BYTES)

    def _refill(self) -> None:
        """Append the next block to what is left unread; set `_eof` when there is none."""
        carry = self._buf[self._pos :]
        if len(carry) > MAX_LINE_BYTES:
            raise FormatError(
                f"a line longer than {MAX_LINE_BYTES // MiB} MiB at byte {self.offset}: "
                "not a line-oriented CSV file"
            )
        block = next(self._blocks, None)
        self._base += self._pos
        self._pos = 0
        if block is None:
            self._eof = True
            self._buf = carry
            return
        if self._first:
            block = self._skip_bom(block)
        nul = block.find(b"\x00")
        if nul >= 0:
            raise FormatError(
                f"NUL byte at byte {self._base + len(carry) + nul}: not a CSV text file "
                "(binary, or a UTF-16/UTF-32 encoding, which are not supported)"
            )
        self._buf = carry + block

    def _skip_bom(self, block: bytes) -> bytes:
        """The first block without a UTF-8 byte-order mark (csv.reader on utf-8-sig text never
        sees it); blocks shorter than the mark are joined first."""
        self._first = False
        while len(block) < len(_BOM):
            more = next(self._blocks, None)
            if more is None:
                break
            block += more
        if block.startswith(_BOM):
            self._base += len(_BOM)
            return block[len(_BOM) :]
        return block

    def _last_eol(self, start: int, end: int) -> int:
        return max(self._buf.rfind(b"\n", start, end), self._buf.rfind(b"\r", start, end))

    def _line_end(self, eol: int) -> int:
        """Where the line whose terminator starts at `eol` ends; -1 when that is unknown yet
        (a CR at the end of the buffer, with more to come: an LF may follow)."""
        buf = self._buf
        if buf[eol] != 13:
            return eol + 1
        if eol + 1 < len(buf):
            return eol + 2 if buf[eol + 1] == 10 else eol + 1
        return eol + 1 if self._eof else -1

    def _lines_end(self, start: int, end: int) -> int:
        """End of the last whole line within buf[start:end] (its terminator may run one byte
        past `end`), or -1 if none is known."""
        eol = self._last_eol(start, end)
        while eol >= 0:
            stop = self._line_end(eol)
            if stop >= 0:
                return stop
            eol = self._last_eol(start, eol)
        return -1

    def _skip_plain_lines(self) -> None:
        """Count whole quote-free lines from the current position; stop at the start of
        the line holding the next quote, or at the end of the file."""
        while True:
            buf, pos = self._buf, self._pos
            quote = buf.find(b'"', pos)
            stop = self._lines_end(pos, quote if quote >= 0 else len(buf))
            if stop >= 0:
                self.skipped += (
                    buf.count(b"\n", pos, stop)
                    + buf.count(b"\r", pos, stop)
                    - buf.count(b"\r\n", pos, stop)
                )
                self._pos = stop
            if quote >= 0:
                return
            if self._eof:
                if self._pos < len(buf):  # a final line without newline nor quote
                    self.skipped += 1
                    self._pos = len(buf)
                return
            self._refill()

    def _batch_end(self) -> int:
        """End of the next batch of whole lines from the current position (at least one
        line, about `_batch` bytes); -1 at the end of the file."""
        while True:
            pos = self._pos
            stop = self._lines_end(pos, min(len(self._buf), pos + self._batch))
            if stop < 0:  # no line ends within the batch: take the first line, however long
                match = _EOL.search(self._buf, pos)
                stop = self._line_end(match.start()) if match else -1
            if stop >= 0:
                return stop
            if self._eof:
                return len(self._buf) if pos < len(self._buf) else -1
            self._refill()


def count_csv_records(blocks: Iterable[bytes]) -> int:
    """Records in the CSV file made of `blocks`, header row included (see the module's
    contract). Raises FormatError for malformed CSV: a quote left open at the end, a
    character after a closing quote other than the delimiter or a line end, a NUL byte, an
    over-long line or field."""
    feed = _LineFeed(blocks)
    delimiter = sniff_delimiter(feed.head())
    reader = csv.reader(
        feed.lines(), delimiter=delimiter, quotechar='"', doublequote=True, strict=True
    )
    records = 0
    try:
        for _record in reader:
            records += 1
            feed.between_records = True
    except csv.Error as exc:
        raise FormatError(
            f"malformed CSV near byte {feed.offset} (delimiter {delimiter!r}): {exc}"
        ) from None
    return records + feed.skipped

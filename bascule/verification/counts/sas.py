"""SAS7BDAT row count from the file's metadata, without reading data pages.

Layout (as reverse-engineered by the sas7bdat R package and used by pandas' reader):
- header (`header_length` bytes, 1 KiB to 64 KiB): a 32-byte magic number; byte 32 is
  ``'3'`` for a 64-bit file (8-byte integers, 32-byte page headers, 24-byte subheader
  pointers) else 32-bit (4, 16, 12); byte 35 is ``'3'`` when header fields after offset 164
  are shifted by 4; byte 37 is 1 for little-endian, 0 for big-endian; header length and page
  size are 4-byte integers at 196 and 200 (+ shift).
- pages of `page_size` bytes follow the header. A page header gives the page type (2 bytes)
  and the subheader count (2 bytes, 4 bytes further); then come the subheader pointers
  (offset, length, compression byte, type byte).
- the row-size subheader (signature F7F7F7F7, padded to 8 bytes in 64-bit files) holds the
  row count at 6 integers from its start. SAS writes it first, on the first metadata page;
  compressed files (RLE ``SASYZCRL``, RDC ``SASYZCR2``) keep it uncompressed there too.

Reads: one read of the first `FIRST_READ_BYTES` (header and, usually, the first page), then
one read per further page until the subheader is found (at most `MAX_META_PAGES` pages, never
past the first data page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bascule.verification.counts.io import FormatError, KiB, RangeReader, read_exact

FIRST_READ_BYTES = 128 * KiB
MAX_META_PAGES = 64
MAGIC = bytes(12) + bytes.fromhex("c2ea8160b31411cfbd92080009c7318c181f1011")
_ROW_SIZE_SIGNATURES = (
    b"\xf7\xf7\xf7\xf7",
    b"\x00\x00\x00\x00\xf7\xf7\xf7\xf7",
    b"\xf7\xf7\xf7\xf7\x00\x00\x00\x00",
    b"\xf7\xf7\xf7\xf7\xff\xff\xfb\xfe",
)
_PAGE_TYPE_MASK = 0xFF00
# metadata pages as pandas reads them: meta, meta2, amd, mix (compressed-data pages skipped)
_META_PAGE_TYPES = (0x0000, 0x4000, 0x0400, 0x0200)
_DATA_PAGE_TYPES = (0x0100, 0x0200)  # data, mix: no metadata page follows them
_ROW_COUNT_INDEX = 6  # in integers from the start of the row-size subheader
_TRUNCATED_SUBHEADER = 1


@dataclass(frozen=True)
class SasLayout:
    """What the header says about the rest of the file."""

    u64: bool
    byteorder: Literal["little", "big"]
    header_length: int
    page_size: int

    @property
    def int_size(self) -> int:
        return 8 if self.u64 else 4

    @property
    def page_header_size(self) -> int:
        return 32 if self.u64 else 16

    @property
    def pointer_size(self) -> int:
        return 24 if self.u64 else 12

    def field(self, data: bytes, offset: int, width: int) -> bytes:
        """`width` bytes at `offset` of `data`; FormatError if they lie outside it."""
        if offset < 0 or offset + width > len(data):
            raise FormatError(
                f"a field at {offset} (+{width} bytes) lies outside its {len(data)}-byte page"
            )
        return data[offset : offset + width]

    def uint(self, data: bytes, offset: int, width: int) -> int:
        return int.from_bytes(self.field(data, offset, width), self.byteorder)


def parse_header(head: bytes, file_size: int) -> SasLayout:
    """The layout from the first bytes of the file (at least 288). Raises FormatError."""
    if head[:32] != MAGIC:
        raise FormatError("no SAS7BDAT magic number at the start: not a SAS7BDAT file")
    if len(head) < 288:
        raise FormatError(f"the header is cut at {len(head)} bytes: the file is truncated")
    u64 = head[32:33] == b"3"
    shift = 4 if head[35:36] == b"3" else 0
    byteorder: Literal["little", "big"] = "little" if head[37] == 1 else "big"
    layout = SasLayout(u64, byteorder, 0, 0)
    header_length = layout.uint(head, 196 + shift, 4)
    page_size = layout.uint(head, 200 + shift, 4)
    if header_length < 288 or page_size < layout.page_header_size + 8:
        raise FormatError(f"implausible header length {header_length} or page size {page_size}")
    if header_length + page_size > file_size:
        raise FormatError(
            f"header ({header_length} bytes) and one page ({page_size}) exceed the file's "
            f"{file_size} bytes: the file is truncated"
        )
    return SasLayout(u64, byteorder, header_length, page_size)


def find_row_count(page: bytes, layout: SasLayout) -> int | None:
    """The row count if `page` holds the row-size subheader, else None. Raises FormatError
    for a malformed page."""
    base = layout.page_header_size
    count = layout.uint(page, base + 4, 2)
    for i in range(count):
        at = base + 8 + i * layout.pointer_size
        offset = layout.uint(page, at, layout.int_size)
        length = layout.uint(page, at + layout.int_size, layout.int_size)
        compression = layout.uint(page, at + 2 * layout.int_size, 1)
        if length == 0 or compression == _TRUNCATED_SUBHEADER:
            continue
        if layout.field(page, offset, layout.int_size) in _ROW_SIZE_SIGNATURES:
            return layout.uint(page, offset + _ROW_COUNT_INDEX * layout.int_size, layout.int_size)
    return None


def page_type(page: bytes, layout: SasLayout) -> int:
    return layout.uint(page, layout.page_header_size, 2) & _PAGE_TYPE_MASK


def count_sas7bdat_rows(reader: RangeReader, first_read_bytes: int = FIRST_READ_BYTES) -> int:
    """Rows of a SAS7BDAT file, from its row-size subheader. Raises FormatError when the file
    is not SAS7BDAT, is truncated, or has no row-size subheader on its metadata pages."""
    size = reader.size
    head = read_exact(reader, 0, min(size, max(first_read_bytes, 1 * KiB)))
    layout = parse_header(head, size)
    for n in range(MAX_META_PAGES):
        start = layout.header_length + n * layout.page_size
        if start + layout.page_size > size:
            break
        end = start + layout.page_size
        page = head[start:end] if end <= len(head) else read_exact(reader, start, end - start)
        kind = page_type(page, layout)
        if kind in _META_PAGE_TYPES:
            rows = find_row_count(page, layout)
            if rows is not None:
                return rows
        if kind in _DATA_PAGE_TYPES:
            break
    raise FormatError("no row-size subheader on the metadata pages: not a readable SAS7BDAT")

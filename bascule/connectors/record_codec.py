"""A local file's record (etag, MD5, metadata) in few enough bytes to live in its inode.

ext4 (mkfs's default 256-byte inodes, 32 of them extra fields) keeps an extended attribute
inside the inode while its value is at most 64 bytes: 256 - 128 (the inode) - 32 (extra
fields) - 4 (the attribute area's magic) - 24 (the entry of a 7-byte name, "bascule" in the
user namespace) - 4 (the end marker); on ext4, `os.setxattr` of 64 bytes keeps a small
file's `st_blocks` at 8, of 65 makes it 16. A longer value takes a block of its own: one
more block allocated, journaled and written per file, 4 KiB on disk for a few bytes. The
JSON form of bascule's record is about 200 bytes; this form of the same record 57 (a local
or Azure source) to 63 (an S3 source, files up to 1 MiB), so a small file is its inode and
one data block (20,000 files of 11 bytes, ext4, encrypted: 3.62 s against 3.79 for the
JSON record, medians of five alternating runs; 2 % less CPU).

Format 1, every integer an unsigned LEB128 varint:

    0x01 | etag: string | MD5: 16 bytes | n: int | n x (key: string, value: string)

A string is a tag, then what it says: below `len(WORDS)`, that word of `WORDS` (the metadata
keys and values bascule writes); `HEX_DASH`, a count and that many integers, written back in
lowercase hexadecimal joined by "-" (file etags, "ino-size-mtime"); `DECIMAL`, one integer
(sizes); `HEX_BYTES`, a count and that many bytes, written back in lowercase hexadecimal (an
MD5: S3's etags); `HEX_0X`, an integer written back as "0x" and uppercase hexadecimal
(Azure's etags); `QUOTED`, a string, written back between double quotes (HTTP etags); from
`RAW`, `tag - RAW` bytes of UTF-8. A record not written in this form (a JSON
record, which starts with "{", as the sidecars hold and earlier versions wrote) is read as
JSON. A value that no form here gives back exactly is written raw: decoding always returns
what was encoded, which the property test checks.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping

FORMAT = 1
WORDS = (
    "bascule-encryption",
    "bascule-plain-size",
    "bascule-source-etag",
    "age-v1",
    "none",
)
_WORD_TAGS = {w: i for i, w in enumerate(WORDS)}
HEX_DASH = len(WORDS)
DECIMAL = HEX_DASH + 1
HEX_BYTES = DECIMAL + 1
HEX_0X = HEX_BYTES + 1
QUOTED = HEX_0X + 1
RAW = QUOTED + 1
MD5_BYTES = 16
_HEX_GROUP = "(?:0|[1-9a-f][0-9a-f]*)"
_HEX_DASH = re.compile(f"{_HEX_GROUP}(?:-{_HEX_GROUP})*")
_DECIMAL_DIGITS = 19  # below int()'s limit on decimal strings, and any size in 64 bits
IN_INODE_BYTES = 64  # the longest value ext4 keeps in a 256-byte inode (see above)


def encode(etag: str, md5: bytes, metadata: Mapping[str, str]) -> bytes | None:
    """The record in format 1; None when the MD5 is not 16 bytes or a value is not a string
    (a manifest read back): the caller writes JSON."""
    out = bytearray((FORMAT,))
    try:
        _string(out, etag)
    except TypeError:
        return None
    return _finish(out, md5, metadata)


def encode_file(st: os.stat_result, md5: bytes, metadata: Mapping[str, str]) -> bytes | None:
    """`encode` for the etag `file_etag(st)` ("ino-size-mtime" in hexadecimal), packed from
    the numbers themselves (half the cost of reading them back from the string)."""
    out = bytearray((FORMAT, HEX_DASH, 3))
    _varint(out, st.st_ino)
    _varint(out, st.st_size)
    _varint(out, st.st_mtime_ns)
    return _finish(out, md5, metadata)


def _finish(out: bytearray, md5: bytes, metadata: Mapping[str, str]) -> bytes | None:
    if len(md5) != MD5_BYTES:
        return None
    out += md5
    _varint(out, len(metadata))
    try:
        for key, value in metadata.items():
            _string(out, key)
            _string(out, value)
    except TypeError:
        return None
    return bytes(out)


def decode(raw: bytes) -> dict[str, object]:
    """The record `raw` holds, in either form, as the JSON form reads ({"etag", "content-md5",
    "metadata"}); {} when it is neither (a damaged or foreign value: no record)."""
    try:
        if raw[:1] == b"{":
            loaded = json.loads(raw)
            return loaded if isinstance(loaded, dict) else {}
        if raw[:1] != bytes((FORMAT,)):
            return {}
        return _Reader(raw).record()
    except (ValueError, IndexError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}


def _varint(out: bytearray, n: int) -> None:
    if n < 0x80:
        out.append(n)
        return
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _string(out: bytearray, s: str) -> None:
    if not isinstance(s, str):
        raise TypeError(f"not a string: {type(s).__name__}")
    word = _WORD_TAGS.get(s)
    if word is not None:
        out.append(word)
        return
    if s.isascii():
        if s.isdigit() and len(s) <= _DECIMAL_DIGITS and (s == "0" or s[0] != "0"):
            out.append(DECIMAL)
            _varint(out, int(s))
            return
        if _packed_ascii(out, s):
            return
    data = s.encode("utf-8")
    _varint(out, RAW + len(data))
    out += data


def _packed_ascii(out: bytearray, s: str) -> bool:
    """Append `s` in the first packed form that gives it back exactly; False if none does."""
    if "-" in s and _hex_dash(out, s):
        return True
    if len(s) >= 2 and s[0] == s[-1] == '"' and s[1:2] != '"':  # a quoted etag (HTTP's form)
        out.append(QUOTED)
        _string(out, s[1:-1])
        return True
    if s.startswith("0x") and len(s) > 2 and s[2:].isalnum() and s[2:].upper() == s[2:]:
        try:
            n = int(s[2:], 16)
        except ValueError:
            return False
        if f"0x{n:X}" == s:  # Azure's etags
            out.append(HEX_0X)
            _varint(out, n)
            return True
    if len(s) % 2 == 0 and s.isalnum() and s.lower() == s:
        try:
            data = bytes.fromhex(s)
        except ValueError:
            return False
        if data.hex() == s:  # an MD5 in hexadecimal (S3's etags), leading zeros kept
            out.append(HEX_BYTES)
            _varint(out, len(data))
            out += data
            return True
    return _hex_dash(out, s)


def _hex_dash(out: bytearray, s: str) -> bool:
    groups = _hex_groups(s)
    if groups is None:
        return False
    out.append(HEX_DASH)
    _varint(out, len(groups))
    for g in groups:
        _varint(out, g)
    return True


def _hex_groups(s: str) -> list[int] | None:
    """The integers of `s` when it is lowercase hexadecimal groups joined by "-", each as
    `format(n, "x")` writes it (no sign, no leading zero): else None."""
    if _HEX_DASH.fullmatch(s) is None:
        return None
    return [int(g, 16) for g in s.split("-")]


class _Reader:
    """Reads format 1 from its second byte; IndexError or ValueError where it is damaged."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._at = 1

    def record(self) -> dict[str, object]:
        etag = self._string()
        md5 = self._take(MD5_BYTES)
        metadata = {}
        for _ in range(self._varint()):
            key = self._string()
            metadata[key] = self._string()
        if self._at != len(self._raw):
            raise ValueError("bytes after the record")
        md5_b64 = base64.b64encode(md5).decode("ascii")
        return {"etag": etag, "content-md5": md5_b64, "metadata": metadata}

    def _take(self, n: int) -> bytes:
        end = self._at + n
        if end > len(self._raw):
            raise IndexError("record cut short")
        data, self._at = self._raw[self._at : end], end
        return data

    def _varint(self) -> int:
        n = shift = 0
        while True:
            byte = self._raw[self._at]
            self._at += 1
            n |= (byte & 0x7F) << shift
            if byte < 0x80:
                return n
            shift += 7

    def _string(self) -> str:
        tag = self._varint()
        if tag < HEX_DASH:
            return WORDS[tag]
        if tag == HEX_DASH:
            return "-".join(format(self._varint(), "x") for _ in range(self._varint()))
        if tag == DECIMAL:
            return str(self._varint())
        if tag == HEX_BYTES:
            return self._take(self._varint()).hex()
        if tag == HEX_0X:
            return f"0x{self._varint():X}"
        if tag == QUOTED:
            return f'"{self._string()}"'
        return self._take(tag - RAW).decode("utf-8")

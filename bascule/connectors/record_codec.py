"""A local file's record (etag, MD5, metadata) in few enough bytes to live in its inode.

ext4 (mkfs's default 256-byte inodes, 32 of them extra fields) keeps an extended attribute
inside the inode while its value is at most 64 bytes: 256 - 128 (the inode) - 32 (extra
fields) - 4 (the attribute area's magic) - 24 (the entry of a 7-byte name, "bascule" in the
user namespace) - 4 (the end marker); on ext4, `os.setxattr` of 64 bytes keeps a small
file's `st_blocks` at 8, of 65 makes it 16. A longer value takes a block of its own: one
more block allocated, journaled and written per file, 4 KiB on disk for a few bytes. The
JSON form of bascule's record is about 200 bytes; these forms hold it in 46 (an Azure source)
to 54 bytes (a local or S3 source), so a small file is its inode and one data block (20,000
files of 11 bytes, ext4, encrypted: see the README's benchmarks).

Format 2, the record of a file a migration wrote (its metadata the keys `MIGRATION_KEYS`, as
`migration.coordinator.object_metadata` makes it; read back in that order), one little-endian struct
(`_layout`; 2.6 us to pack where format 1 takes 5.5, on a put of about 40 us):

    0x02 | flags | ino, size: u32 or u64 | mtime_ns: u64 | MD5: 16 bytes | plain size:
    u32 or u64 | the source etag: three numbers (a local file's), one (Azure's "0x..."),
    16 bytes (an MD5 in hexadecimal, S3's), or a length and that many bytes of UTF-8

Format 1, any record, every integer an unsigned LEB128 varint:

    0x01 | etag: string | MD5: 16 bytes | n: int | n x (key: string, value: string)

A string is a tag, then what it says: below `len(WORDS)`, that word of `WORDS` (the metadata
keys and values bascule writes); `HEX_DASH`, a count and that many integers, written back in
lowercase hexadecimal joined by "-" (file etags, "ino-size-mtime"); `DECIMAL`, one integer
(sizes); `HEX_BYTES`, a count and that many bytes, written back in lowercase hexadecimal (an
MD5: S3's etags); `HEX_0X`, an integer written back as "0x" and uppercase hexadecimal
(Azure's etags); `QUOTED`, a string, written back between double quotes (HTTP etags); from
`RAW`, `tag - RAW` bytes of UTF-8.

A record in neither form (a JSON record, which starts with "{", as the sidecars hold and
earlier versions wrote) is read as JSON. A value that no packed form gives back exactly is
written raw (or the record falls back to the general form, or to JSON): decoding always
returns what was encoded, which the property tests check.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
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
_U32, _U64 = 2**32, 2**64
_FORMAT_TAG = b"\x01"

# Format 2: the record of a file a migration wrote (`migration.coordinator.object_metadata`).
FIXED = 2
MIGRATION_KEYS = ("bascule-encryption", "bascule-plain-size", "bascule-source-etag")
_KEY_ENCRYPTION, _KEY_PLAIN, _KEY_SOURCE = MIGRATION_KEYS
_NONE = 0x01  # "bascule-encryption" is "none" (else "age-v1")
_ENCRYPTION_FLAGS = {"age-v1": 0, "none": _NONE}
_INO64, _SIZE64, _PLAIN64 = 0x02, 0x04, 0x08  # that number takes 8 bytes (else 4)
_SOURCE_FORMS = 0x30  # how the source etag is packed:
_SRC_FILE = 0x00  # a local file's, "ino-size-mtime": three numbers
_SRC_AZURE = 0x10  # Azure's, "0x" and uppercase hexadecimal: one number
_SRC_MD5 = 0x20  # an MD5 in lowercase hexadecimal (S3's): 16 bytes
_SRC_RAW = 0x30  # else: its length in one byte, then its UTF-8 after the struct
_SRC_INO64, _SRC_SIZE64 = 0x40, 0x80  # widths of a local source's inode and size
_FIXED_TAG = b"\x02"
_HEX16 = "(0|[1-9a-f][0-9a-f]{0,15})"
_FILE_ETAG = re.compile(f"{_HEX16}-{_HEX16}-{_HEX16}")
_AZURE_ETAG = re.compile("0x(?:0|[1-9A-F][0-9A-F]{0,15})")
_MD5_HEX = re.compile("[0-9a-f]{32}")
_DECIMAL = re.compile("0|[1-9][0-9]{0,18}")  # any size in 64 bits


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
    the numbers themselves: format 2 where the metadata is what a migration writes (one
    `struct.pack`), else format 1."""
    ino, size, mtime = st.st_ino, st.st_size, st.st_mtime_ns
    if not (0 <= ino < _U64 and 0 <= size < _U64 and 0 <= mtime < _U64):
        return None  # file_etag writes a sign: the JSON form keeps it
    if len(md5) == MD5_BYTES and len(metadata) == len(MIGRATION_KEYS):
        try:
            fixed = _fixed(ino, size, mtime, md5, metadata)
        except (KeyError, TypeError):  # other keys, or a value that is not a string
            fixed = None
        if fixed is not None:
            return fixed
    out = bytearray((FORMAT, HEX_DASH, 3))
    _varint(out, ino)
    _varint(out, size)
    _varint(out, mtime)
    return _finish(out, md5, metadata)


def _fixed(ino: int, size: int, mtime: int, md5: bytes, meta: Mapping[str, str]) -> bytes | None:
    """Format 2, or None where a value has none of its forms; KeyError for a key that is not
    one of `MIGRATION_KEYS`, TypeError for a value that is not a string."""
    flags = _ENCRYPTION_FLAGS.get(meta[_KEY_ENCRYPTION])
    plain = meta[_KEY_PLAIN]
    if flags is None or _DECIMAL.fullmatch(plain) is None:
        return None
    source = meta[_KEY_SOURCE]
    plain_n = int(plain)
    extra = b""
    tail: tuple[int | bytes, ...]
    if (m := _FILE_ETAG.fullmatch(source)) is not None:
        src_ino, src_size, src_mtime = int(m[1], 16), int(m[2], 16), int(m[3], 16)
        flags |= (_SRC_INO64 if src_ino >= _U32 else 0) | (_SRC_SIZE64 if src_size >= _U32 else 0)
        tail = (src_ino, src_size, src_mtime)
    elif _AZURE_ETAG.fullmatch(source) is not None:
        flags |= _SRC_AZURE
        tail = (int(source[2:], 16),)
    elif _MD5_HEX.fullmatch(source) is not None:
        flags |= _SRC_MD5
        tail = (bytes.fromhex(source),)
    else:
        extra = source.encode("utf-8")
        if len(extra) > 0xFF:
            return None
        flags |= _SRC_RAW
        tail = (len(extra),)
    flags |= (_INO64 if ino >= _U32 else 0) | (_SIZE64 if size >= _U32 else 0)
    flags |= _PLAIN64 if plain_n >= _U32 else 0
    layout = _LAYOUTS.get(flags) or _layout(flags)
    return layout.pack(FIXED, flags, ino, size, mtime, md5, plain_n, *tail) + extra


_LAYOUTS: dict[int, struct.Struct] = {}


def _layout(flags: int) -> struct.Struct:
    """The struct of a format-2 record with these flags (a raw source etag's bytes follow)."""

    def width(bit: int) -> str:
        return "Q" if flags & bit else "I"

    layout = f"<BB{width(_INO64)}{width(_SIZE64)}Q16s{width(_PLAIN64)}"
    form = flags & _SOURCE_FORMS
    if form == _SRC_FILE:
        layout += f"{width(_SRC_INO64)}{width(_SRC_SIZE64)}Q"
    else:
        layout += {_SRC_AZURE: "Q", _SRC_MD5: "16s", _SRC_RAW: "B"}[form]
    return _LAYOUTS.setdefault(flags, struct.Struct(layout))


def _read_fixed(raw: bytes) -> dict[str, object]:
    """A format-2 record; ValueError, IndexError or struct.error where it is damaged."""
    flags = raw[1]
    layout = _layout(flags)
    _, _, ino, size, mtime, md5, plain_n, *tail = layout.unpack_from(raw)
    rest = raw[layout.size :]
    form = flags & _SOURCE_FORMS
    if form == _SRC_FILE:
        source = f"{tail[0]:x}-{tail[1]:x}-{tail[2]:x}"
    elif form == _SRC_AZURE:
        source = f"0x{tail[0]:X}"
    elif form == _SRC_MD5:
        source = tail[0].hex()
    else:
        if len(rest) != tail[0]:
            raise ValueError("raw etag cut short, or bytes after it")
        source, rest = rest.decode("utf-8"), b""
    if rest:
        raise ValueError("bytes after the record")
    metadata = {
        MIGRATION_KEYS[0]: "none" if flags & _NONE else "age-v1",
        MIGRATION_KEYS[1]: str(plain_n),
        MIGRATION_KEYS[2]: source,
    }
    md5_b64 = base64.b64encode(md5).decode("ascii")
    return {"etag": f"{ino:x}-{size:x}-{mtime:x}", "content-md5": md5_b64, "metadata": metadata}


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
        if raw[:1] == _FIXED_TAG:
            return _read_fixed(raw)
        if raw[:1] != _FORMAT_TAG:
            return {}
        return _Reader(raw).record()
    except (ValueError, IndexError, struct.error):  # UnicodeDecodeError, JSONDecodeError too
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
        raw, at = self._raw, self._at
        n = raw[at]
        at += 1
        if n >= 0x80:  # more bytes follow (a tag or a small number takes one)
            n &= 0x7F
            shift = 7
            while (byte := raw[at]) >= 0x80:
                n |= (byte & 0x7F) << shift
                shift += 7
                at += 1
            n |= byte << shift
            at += 1
        self._at = at
        return n

    def _string(self) -> str:
        tag = self._varint()
        if tag < HEX_DASH:
            return WORDS[tag]
        if tag == HEX_DASH:
            return "-".join([f"{self._varint():x}" for _ in range(self._varint())])
        if tag == DECIMAL:
            return str(self._varint())
        if tag == HEX_BYTES:
            return self._take(self._varint()).hex()
        if tag == HEX_0X:
            return f"0x{self._varint():X}"
        if tag == QUOTED:
            return f'"{self._string()}"'
        return self._take(tag - RAW).decode("utf-8")

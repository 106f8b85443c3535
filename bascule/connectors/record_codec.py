"""A migrated file's record (etag, MD5, metadata) in few enough bytes to live in its inode.

ext4 (mkfs's default 256-byte inodes, 32 of them extra fields) keeps an extended attribute
inside the inode while its value is at most 64 bytes: 256 - 128 (the inode) - 32 (extra
fields) - 4 (the attribute area's magic) - 24 (the entry of a 7-byte name, "bascule" in the
user namespace) - 4 (the end marker); on ext4, `os.setxattr` of 64 bytes keeps a small
file's `st_blocks` at 8, of 65 makes it 16. A longer value takes a block of its own: one
more block allocated, journaled and written per file, 4 KiB on disk for a few bytes. The
JSON form of bascule's record is about 200 bytes; this form holds it in 46 (an Azure source)
to 54 bytes (a local or S3 source), so a small file is its inode and one data block (20,000
files of 11 bytes, ext4, encrypted: see the README's benchmarks).

The form packs the record of a file a migration wrote (its metadata the keys
`MIGRATION_KEYS`, as `migration.coordinator.object_metadata` makes it; read back in that
order) as one little-endian struct (`_layout`; 2.6 us to pack, on a put of about 40 us):

    0x02 | flags | ino, size: u32 or u64 | mtime_ns: u64 | MD5: 16 bytes | plain size:
    u32 or u64 | the source etag: three numbers (a local file's), one (Azure's "0x..."),
    16 bytes (an MD5 in hexadecimal, S3's), or a length and that many bytes of UTF-8

Any other record (other metadata, a value no field here holds) is JSON, as the sidecars and
earlier versions write it; a value starting with "{" is read as JSON. Decoding gives back
exactly what was encoded, which the property tests check.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from collections.abc import Mapping

MD5_BYTES = 16
IN_INODE_BYTES = 64  # the longest value ext4 keeps in a 256-byte inode (see above)
_U32, _U64 = 2**32, 2**64
FIXED = 2  # the first byte (a JSON record's is "{")
_FIXED_TAG = b"\x02"
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
_HEX16 = "(0|[1-9a-f][0-9a-f]{0,15})"
_FILE_ETAG = re.compile(f"{_HEX16}-{_HEX16}-{_HEX16}")
_AZURE_ETAG = re.compile("0x(?:0|[1-9A-F][0-9A-F]{0,15})")
_MD5_HEX = re.compile("[0-9a-f]{32}")
_DECIMAL = re.compile("0|[1-9][0-9]{0,19}")  # a decimal without leading zeros, up to 2**64


def encode_file(st: os.stat_result, md5: bytes, metadata: Mapping[str, str]) -> bytes | None:
    """The record of the file `st` describes (its etag `file_etag(st)`, packed from the
    numbers themselves); None where it is not a migrated file's record or a value does not
    fit (the caller writes JSON)."""
    ino, size, mtime = st.st_ino, st.st_size, st.st_mtime_ns
    if not (0 <= ino < _U64 and 0 <= size < _U64 and 0 <= mtime < _U64):
        return None  # file_etag writes a sign: the JSON form keeps it
    if len(md5) != MD5_BYTES or len(metadata) != len(MIGRATION_KEYS):
        return None
    try:
        return _fixed(ino, size, mtime, md5, metadata)
    except (KeyError, TypeError):  # other keys, or a value that is not a string
        return None


def _fixed(ino: int, size: int, mtime: int, md5: bytes, meta: Mapping[str, str]) -> bytes | None:
    """Format 2, or None where a value has none of its forms; KeyError for a key that is not
    one of `MIGRATION_KEYS`, TypeError for a value that is not a string."""
    flags = _ENCRYPTION_FLAGS.get(meta[_KEY_ENCRYPTION])
    plain = meta[_KEY_PLAIN]
    if flags is None or _DECIMAL.fullmatch(plain) is None:
        return None
    source = meta[_KEY_SOURCE]
    plain_n = int(plain)
    if plain_n >= _U64:
        return None
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


def decode(raw: bytes) -> dict[str, object]:
    """The record `raw` holds, packed or JSON, as the JSON form reads ({"etag",
    "content-md5", "metadata"}); {} when it is neither (a damaged or foreign value: no
    record)."""
    try:
        if raw[:1] == b"{":
            loaded = json.loads(raw)
            return loaded if isinstance(loaded, dict) else {}
        if raw[:1] == _FIXED_TAG:
            return _read_fixed(raw)
    except (ValueError, IndexError, struct.error):  # UnicodeDecodeError, JSONDecodeError too
        return {}
    return {}

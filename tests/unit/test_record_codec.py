"""The local connector's packed record: it gives back exactly what was put, the records a
migration writes fit an ext4 inode (64 bytes), any other record and every JSON record
(sidecars, earlier versions) is JSON as before, and a damaged value reads as no record
rather than failing a listing."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bascule.connectors import record_codec
from bascule.connectors.file_records import XATTR, file_etag, record_json
from bascule.connectors.local import LocalConnector
from bascule.migration.coordinator import object_metadata
from bascule.migration.plan import ObjectPlan

_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
# strings near the forms the codec packs: digits, hexadecimal, the values bascule writes
_NEAR = st.one_of(
    _TEXT,
    st.from_regex(r"\A\"?[0-9a-fA-F\-x_ +]{0,30}\"?\Z"),
    st.integers(min_value=0, max_value=2**70).map(str),
    st.sampled_from(["age-v1", "none", "0", "00", "01"]),
)
_MD5 = st.binary(min_size=16, max_size=16)
_FILE_ETAG = st.tuples(st.integers(0, 2**70), st.integers(0, 2**70), st.integers(0, 2**70)).map(
    lambda t: "-".join(f"{n:x}" for n in t)
)
_SOURCE_ETAG = st.one_of(
    _NEAR,
    _FILE_ETAG,
    st.integers(0, 2**68).map(lambda n: f"0x{n:X}"),
    st.binary(min_size=16, max_size=16).map(bytes.hex),
    st.text(max_size=300),
)


def _stat(ino: int, size: int, mtime_ns: int) -> os.stat_result:
    fields = [0] * 10
    fields[1], fields[6] = ino, size
    return os.stat_result((*fields, 0.0, 0.0, 0.0, 0, mtime_ns, 0))


@given(
    ino=st.integers(min_value=0, max_value=2**64 - 1),
    size=st.integers(min_value=0, max_value=2**63 - 1),
    mtime_ns=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_a_file_s_etag_packed_from_its_numbers_reads_as_file_etag(
    ino: int, size: int, mtime_ns: int
) -> None:
    st_ = _stat(ino, size, mtime_ns)
    assert st_.st_mtime_ns == mtime_ns
    encoded = record_codec.encode_file(st_, bytes(16), object_metadata(_plan("1-2-3", 11)))
    assert encoded is not None
    assert record_codec.decode(encoded)["etag"] == file_etag(st_)


@given(
    ino=st.integers(0, 2**64 - 1),
    size=st.integers(0, 2**64 - 1),
    md5=_MD5,
    encryption=st.one_of(st.sampled_from(["age-v1", "none"]), _NEAR),
    plain=st.one_of(st.integers(0, 2**66).map(str), _NEAR),
    source=_SOURCE_ETAG,
)
def test_a_migrated_file_s_record_reads_back_whatever_its_values(
    ino: int, size: int, md5: bytes, encryption: str, plain: str, source: str
) -> None:
    """Packed where the values fit its fields, and then read back as put; left to JSON (None)
    only where they do not."""
    metadata = dict(zip(record_codec.MIGRATION_KEYS, (encryption, plain, source), strict=True))
    st_ = _stat(ino, size, 1_765_000_000_000_000_000)
    encoded = record_codec.encode_file(st_, md5, metadata)
    fits = (
        encryption in ("age-v1", "none")
        and plain.isascii()
        and plain.isdigit()
        and str(int(plain)) == plain
        and int(plain) < 2**64
        and len(source.encode()) <= 0xFF
    )
    if not fits:
        assert encoded is None
        return
    assert encoded is not None
    assert record_codec.decode(encoded) == {
        "etag": file_etag(st_),
        "content-md5": base64.b64encode(md5).decode(),
        "metadata": metadata,
    }


def test_bascule_s_own_records_are_packed_and_others_left_to_json(tmp_path: Path) -> None:
    md5 = bytes(16)
    for source in ("9a3f21c-b-18ef098b36a63c6a", "0x8DCA1B2C3D4E5F6", "ab" * 16, "x-y"):
        metadata = object_metadata(_plan(source, 11))
        encoded = record_codec.encode_file(_stat(5, 211, 7), md5, metadata)
        assert encoded is not None and encoded[0] == record_codec.FIXED
    assert record_codec.encode_file(_stat(5, 211, 7), md5, {"owner": "hdh"}) is None
    conn = LocalConnector(tmp_path)
    conn.put("d/o", io.BytesIO(b"x"), 1, metadata={"Owner": "hdh"})
    raw = os.getxattr(tmp_path / "d" / "o", XATTR)
    assert json.loads(raw)["metadata"] == {"owner": "hdh"}
    assert conn.stat("d/o").metadata == {"owner": "hdh"}


def _plan(etag: str, size: int) -> ObjectPlan:
    return ObjectPlan("d", "k", "k", size, etag, "new", True, size, size + 200, ())


@pytest.mark.parametrize(
    "source_etag",
    [
        "9a3f21c-b-18ef098b36a63c6a",  # a local source: inode, size and mtime in hexadecimal
        "0x8DCA1B2C3D4E5F6",  # Azure Blob (the connectors keep etags without their quotes)
        "0e107d9d372bb6826bd81d3542a419d6",  # an S3 source: the MD5 of a single-part object
        "an etag of another form",
    ],
)
def test_a_migrated_file_s_record_fits_an_ext4_inode(tmp_path: Path, source_etag: str) -> None:
    """Up to 1 MiB (beyond it, a block more per file is a small share of its data)."""
    conn = LocalConnector(tmp_path)
    metadata = object_metadata(_plan(source_etag, 2**20 - 200))  # encrypted: 200 B of age
    conn.put("d/o", io.BytesIO(b"x" * 2**20), 2**20, metadata=metadata)
    raw = os.getxattr(tmp_path / "d" / "o", XATTR)
    assert len(raw) <= record_codec.IN_INODE_BYTES
    assert len(record_json(file_etag(os.stat(tmp_path / "d" / "o")), "a" * 24, metadata)) > 64
    assert conn.stat("d/o").metadata == metadata


def test_a_json_record_reads_as_before() -> None:
    record = record_json("1-2-3", "MfcJqC9bekZKLzHacwRHAw==", {"k": "v"})
    assert record_codec.decode(record) == json.loads(record)


def test_a_record_that_cannot_be_packed_is_refused_for_json() -> None:
    metadata = object_metadata(_plan("1-2-3", 11))
    assert record_codec.encode_file(_stat(5, 211, 7), b"short", metadata) is None
    odd = {**metadata, "bascule-plain-size": 3}
    assert record_codec.encode_file(_stat(5, 211, 7), bytes(16), odd) is None  # type: ignore[arg-type]
    assert record_codec.encode_file(_stat(-1, 211, 7), bytes(16), metadata) is None
    largest = {**metadata, "bascule-plain-size": str(2**64 - 1)}
    packed = record_codec.encode_file(_stat(5, 211, 7), bytes(16), largest)
    assert packed is not None and record_codec.decode(packed)["metadata"] == largest
    too_large = {**metadata, "bascule-plain-size": str(2**64)}
    assert record_codec.encode_file(_stat(5, 211, 7), bytes(16), too_large) is None


@pytest.mark.parametrize("source", ["1-2-3", "0x1F", "ab" * 16, "raw etag"])
@pytest.mark.parametrize("cut", [1, 2, 10, 30, -1])
def test_a_damaged_migration_record_reads_as_none(cut: int, source: str) -> None:
    encoded = record_codec.encode_file(
        _stat(5, 211, 7), bytes(16), object_metadata(_plan(source, 11))
    )
    assert encoded is not None and encoded[0] == record_codec.FIXED
    assert record_codec.decode(encoded[:cut]) == {}
    assert record_codec.decode(encoded + b"\x00") == {}


def test_a_value_of_no_known_form_reads_as_none() -> None:
    encoded = record_codec.encode_file(
        _stat(5, 211, 7), bytes(16), object_metadata(_plan("raw etag", 11))
    )
    assert encoded is not None
    assert record_codec.decode(b"\x03" + encoded[1:]) == {}  # a form this version lacks
    assert record_codec.decode(encoded[:-1] + b"\xff") == {}  # not UTF-8
    assert record_codec.decode(b"[1, 2]") == {}
    assert record_codec.decode(b"{not json") == {}
    assert record_codec.decode(b"") == {}

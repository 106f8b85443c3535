"""The local connector's record is the JSON `json.dumps` writes, byte for byte: files written
by earlier versions and by this one read the same, and a reader may parse it with any JSON
library."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bascule.connectors.file_records import record_json

_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


@given(etag=_TEXT, md5=_TEXT, metadata=st.dictionaries(_TEXT, _TEXT, max_size=6))
def test_the_record_is_what_json_dumps_writes(
    etag: str, md5: str, metadata: dict[str, str]
) -> None:
    expected = json.dumps({"etag": etag, "content-md5": md5, "metadata": metadata}).encode()
    assert record_json(etag, md5, metadata) == expected


def test_quotes_controls_and_non_ascii_are_escaped_as_json_does() -> None:
    metadata = {'a"b': "line\nbreak\ttab", "é": "\u2028\x00\\"}
    got = record_json('"quoted"', "md5==", metadata)
    assert json.loads(got) == {"etag": '"quoted"', "content-md5": "md5==", "metadata": metadata}
    assert got.isascii()


def test_a_value_that_is_not_a_string_is_written_as_json_does() -> None:
    odd = {"size": 3, "flag": True}
    got = record_json("e", "m", odd)  # type: ignore[arg-type]  # a manifest read back
    assert got == json.dumps({"etag": "e", "content-md5": "m", "metadata": odd}).encode()

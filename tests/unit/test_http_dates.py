"""HTTP dates: the positional reader agrees with the standard library on every layout
object stores send, refuses what is not a date, and the cached formatter is exact."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formatdate, parsedate_to_datetime

import pytest

from bascule.connectors.azure.rest import parse_listing
from bascule.connectors.http_dates import format_http_date, http_date, http_date_now


def _random_times(n: int) -> list[datetime]:
    rng = random.Random(7)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    return [start + timedelta(seconds=rng.randrange(0, 5_000_000_000)) for _ in range(n)]


def test_fixdates_read_as_the_standard_library_reads_them() -> None:
    for when in _random_times(2000):
        text = format_datetime(when, usegmt=True)
        assert http_date(text) == parsedate_to_datetime(text) == when


def test_the_obsolete_layouts_and_numeric_zones_still_read() -> None:
    expected = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
    assert http_date("Sunday, 06-Nov-94 08:49:37 GMT") == expected
    assert http_date("Sun Nov  6 08:49:37 1994") == expected
    assert http_date("Sun, 06 Nov 1994 09:49:37 +0100") == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not a date",
        "Sun, 31 Feb 2026 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 25:49:37 GMT",  # no such hour
        "Sun, 06 Foo 1994 08:49:37 GMT",  # no such month
        "Sun, 06 Nov 19x4 08:49:37 GMT",
    ],
)
def test_what_is_not_a_date_reads_as_none(text: str | None) -> None:
    assert http_date(text) is None


def test_the_formatter_writes_what_the_standard_library_writes() -> None:
    for when in _random_times(2000):
        seconds = int(when.timestamp())
        assert format_http_date(seconds) == formatdate(seconds, usegmt=True)


def test_the_cached_date_is_the_current_second() -> None:
    before = int(time.time())
    text = http_date_now()
    after = int(time.time())
    assert text in {format_http_date(s) for s in range(before, after + 1)}
    assert http_date_now() in {format_http_date(s) for s in range(before, int(time.time()) + 1)}


def test_a_listing_reads_last_modified_as_an_aware_time() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><EnumerationResults><Blobs><Blob>'
        b"<Name>a/b.csv</Name><Properties><Last-Modified>Mon, 07 Dec 2026 13:54:07 GMT"
        b"</Last-Modified><Etag>0x1</Etag><Content-Length>3</Content-Length></Properties>"
        b"</Blob><Blob><Name>a/c.csv</Name><Properties><Last-Modified>garbled</Last-Modified>"
        b"<Content-Length>0</Content-Length></Properties></Blob></Blobs><NextMarker/>"
        b"</EnumerationResults>"
    )
    blobs, marker = parse_listing(body)
    assert [b.last_modified for b in blobs] == [datetime(2026, 12, 7, 13, 54, 7, tzinfo=UTC), None]
    assert marker == ""

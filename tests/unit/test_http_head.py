"""How the data path reads a reply's header lines, as libcurl hands them over."""

from __future__ import annotations

from bascule.connectors.http import parse_head


def test_the_last_response_wins_over_an_interim_one() -> None:
    lines = [
        b"HTTP/1.1 100 Continue\r\n",
        b"X-Interim: yes\r\n",
        b"\r\n",
        b"HTTP/1.1 206 Partial Content\r\n",
        b'ETag: "abc"\r\n',
        b"Content-Range: bytes 0-9/20\r\n",
        b"\r\n",
    ]
    status, headers = parse_head(lines)
    assert status == 206
    assert headers == {"etag": '"abc"', "content-range": "bytes 0-9/20"}


def test_names_are_lowercase_values_trimmed_and_colons_in_values_kept() -> None:
    lines = [b"HTTP/1.1 200 OK\r\n", b"X-Ms-Date:  Wed, 02 Dec 2026 12:00:00 GMT \r\n", b"\r\n"]
    assert parse_head(lines) == (200, {"x-ms-date": "Wed, 02 Dec 2026 12:00:00 GMT"})


def test_no_status_line_is_status_zero() -> None:
    assert parse_head([]) == (0, {})

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


def test_a_value_holding_a_status_like_text_is_a_value() -> None:
    lines = [
        b"HTTP/1.1 200 OK\r\n",
        b"Location: https://host/HTTP/1.1 500 x\r\n",
        b"X-Note:HTTP/2 204\r\n",
        b"\r\n",
    ]
    assert parse_head(lines) == (
        200,
        {"location": "https://host/HTTP/1.1 500 x", "x-note": "HTTP/2 204"},
    )


def test_lines_without_a_colon_are_not_headers() -> None:
    lines = [b"HTTP/1.1 404 Not Found\r\n", b"garbage\r\n", b"A: 1\r\n", b"\r\n"]
    assert parse_head(lines) == (404, {"a": "1"})

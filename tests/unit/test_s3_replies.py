"""S3's XML answers as bascule reads them, on the answers the S3 API reference shows (with
and without its namespace), and the one body it sends (CompleteMultipartUpload)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from bascule.connectors.http import HttpFailure, Reply
from bascule.connectors.s3 import replies
from bascule.connectors.s3.rest import S3Rest

NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def test_list_parts_pages_and_checksums() -> None:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult{NS}><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId>
<NextPartNumberMarker>2</NextPartNumberMarker><IsTruncated>true</IsTruncated>
<Part><PartNumber>1</PartNumber><ETag>"e1"</ETag><Size>5242880</Size>
<ChecksumSHA256>c2hhMQ==</ChecksumSHA256></Part>
<Part><PartNumber>2</PartNumber><ETag>"e2"</ETag><Size>4</Size></Part>
</ListPartsResult>""".encode()
    page = replies.parse_parts(body)
    assert page.items == [
        replies.ListedPart(1, 5242880, "e1", "c2hhMQ=="),
        replies.ListedPart(2, 4, "e2", ""),
    ]
    assert page.next_markers == {"part-number-marker": "2"}
    last = body.replace(b"<IsTruncated>true", b"<IsTruncated>false")
    assert replies.parse_parts(last).next_markers is None


@pytest.mark.parametrize("encoded", [True, False])
def test_list_uploads_decodes_keys_only_where_the_answer_says_so(encoded: bool) -> None:
    key = "snds/a%2Bb.csv" if encoded else "snds/a+b.csv"
    encoding = "<EncodingType>url</EncodingType>" if encoded else ""
    body = f"""<ListMultipartUploadsResult>{encoding}<IsTruncated>true</IsTruncated>
<NextKeyMarker>{key}</NextKeyMarker><NextUploadIdMarker>u1</NextUploadIdMarker>
<Upload><Key>{key}</Key><UploadId>u1</UploadId>
<Initiated>2026-12-03T06:00:00.000Z</Initiated></Upload>
</ListMultipartUploadsResult>""".encode()
    page = replies.parse_uploads(body)
    at = datetime(2026, 12, 3, 6, tzinfo=UTC)
    assert page.items == [replies.ListedUpload("snds/a+b.csv", "u1", at)]
    assert page.next_markers == {"key-marker": "snds/a+b.csv", "upload-id-marker": "u1"}


def test_create_and_copy_answers() -> None:
    created = f"<InitiateMultipartUploadResult{NS}><UploadId>VXBsb2Fk</UploadId>"
    assert replies.parse_upload_id((created + "</InitiateMultipartUploadResult>").encode()) == (
        "VXBsb2Fk"
    )
    with pytest.raises(ValueError, match="without an UploadId"):
        replies.parse_upload_id(b"<InitiateMultipartUploadResult/>")
    copied = f'<CopyPartResult{NS}><ETag>"abc"</ETag></CopyPartResult>'.encode()
    assert replies.parse_etag(copied) == "abc"
    assert replies.parse_etag(b"") == ""  # rclone serve s3's answer: nothing copied


def test_an_error_inside_a_200_is_a_failure() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"""
    assert replies.error_in_ok(body) == ("InternalError", "We encountered an internal error.")
    with pytest.raises(HttpFailure) as failed:
        S3Rest._checked_ok(Reply(200, {}, body))
    assert (failed.value.code, failed.value.status) == ("InternalError", 200)
    done = f'<CompleteMultipartUploadResult{NS}><ETag>"x-2"</ETag></CompleteMultipartUploadResult>'
    assert replies.error_in_ok(done.encode()) is None
    assert S3Rest._checked_ok(Reply(200, {}, done.encode())).status == 200


def test_the_complete_body_lists_parts_in_order_with_their_checksums() -> None:
    body = replies.complete_body([(1, "e&1", "c2hh"), (2, "e2", "")])
    root = ET.fromstring(body)
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    parts = [
        (p.findtext(f"{ns}PartNumber"), p.findtext(f"{ns}ETag"), p.findtext(f"{ns}ChecksumSHA256"))
        for p in root.iter(f"{ns}Part")
    ]
    assert parts == [("1", '"e&1"', "c2hh"), ("2", '"e2"', None)]


@pytest.mark.parametrize("body", [b"<ListPartsResult><Part>", b"not xml at all", b""])
def test_an_unreadable_answer_is_a_storage_error_in_one_line(body: bytes) -> None:
    """A 200 whose body is cut or is not XML is the server's failure: mapped to a
    ConnectorError (exit 3 at the CLI), never a ParseError traceback."""
    from bascule.connectors.s3.errors import map_error
    from bascule.connectors.s3.rest import _read
    from bascule.errors import ConnectorError

    with pytest.raises(HttpFailure) as failed:
        _read(replies.parse_parts if body else replies.parse_upload_id, Reply(200, {}, body))
    mapped = map_error(failed.value, "s3://b", "k")
    assert type(mapped) is ConnectorError and not mapped.retryable
    assert "UnreadableAnswer" in str(mapped) and "\n" not in str(mapped)

"""The S3 requests bascule sends, over `bascule.connectors.http` (see there why).

The data path: GetObject (whole or a range, If-Match), PutObject, UploadPart and
ListObjectsV2 (whose answer botocore parses at about 0.12 ms of CPU per object listed;
ElementTree, in C, at a tenth of that). The control path: HeadObject, HeadBucket,
DeleteObject, CreateMultipartUpload, ListParts, CompleteMultipartUpload,
AbortMultipartUpload, ListMultipartUploads and UploadPartCopy, which are per object at most
but which, through boto3, cost every run its import and client (about 0.24 s of a one-object
run's 0.7 s). Each request is the one boto3 sends for that operation (method, path, query
and headers), so that proxies, policies and servers see no difference; the answers are
parsed in `replies`.

Requests are signed by `sigv4.S3Signer` (the signature botocore's `S3SigV4Auth` makes, at a
seventh of its cost). The payload is never hashed for the signature (``UNSIGNED-PAYLOAD``,
as boto3 does over HTTPS when a checksum header is present): every write carries a checksum
header instead (Content-MD5 or x-amz-checksum-sha256, per the provider's quirks), which is
signed and which the server checks where it can.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from bascule.connectors.base import ObjectInfo, PartBytes
from bascule.connectors.http import (
    HttpFailure,
    PoolSettings,
    Reply,
    Transport,
    retry_after,
)
from bascule.connectors.s3.replies import (
    ListedPart,
    ListedUpload,
    Page,
    complete_body,
    error_in_ok,
    parse_etag,
    parse_listing,
    parse_parts,
    parse_upload_id,
    parse_uploads,
)
from bascule.connectors.s3.sigv4 import Credentials, S3Signer

META_PREFIX = "x-amz-meta-"
T = TypeVar("T")


class S3Rest:
    """The data-path requests of one bucket. Thread-safe (one pool, shared)."""

    def __init__(
        self,
        bucket: str,
        base_url: str,
        region: str,
        credentials: Credentials,
        settings: PoolSettings,
    ) -> None:
        """`base_url`: where the objects of `bucket` are, e.g.
        ``https://b.s3.fr-par.scw.cloud`` (virtual-hosted) or ``https://127.0.0.1:9000/b``
        (path style)."""
        self._bucket = bucket
        parts = urlsplit(base_url)
        self._prefix = parts.path.rstrip("/")
        self._transport = Transport(base_url, settings)
        self._signer = S3Signer(base_url, region, credentials)

    def _path(self, key: str, query: str = "") -> str:
        path = f"{self._prefix}/{quote(key, safe='/~')}"
        return f"{path}?{query}" if query else path

    def _signed(self, method: str, path: str, headers: dict[str, str]) -> dict[str, str]:
        return self._signer.sign(method, path, headers)

    def _send(
        self, method: str, path: str, headers: dict[str, str], body: PartBytes | None = None
    ) -> Reply:
        reply = self._transport.request(method, path, self._signed(method, path, headers), body)
        if reply.status >= 300:
            raise _failure(reply.status, reply.headers, reply.body)
        return reply

    def list_page(
        self, prefix: str, token: str | None, max_keys: int
    ) -> tuple[list[ObjectInfo], str | None]:
        """One ListObjectsV2 page: its objects (key order) and the next page's token."""
        params = {"list-type": "2", "encoding-type": "url", "max-keys": str(max_keys)}
        if prefix:
            params["prefix"] = prefix
        if token:
            params["continuation-token"] = token
        path = f"{self._prefix or '/'}?{_query(params)}"
        return _read(parse_listing, self._send("GET", path, {}))

    def get(
        self, key: str, start: int | None = None, length: int | None = None, if_match: str = ""
    ) -> tuple[Mapping[str, str], io.RawIOBase | io.BytesIO]:
        """GetObject: `length` bytes from `start` when given; If-Match when set. The reply's
        headers and its body: read whole when it is small, else streamed."""
        path, headers = self._get_request(key, start, length, if_match)
        return self._transport.get(path, headers, length, _failure)

    def get_to(
        self,
        key: str,
        start: int,
        length: int,
        if_match: str,
        sink: Callable[[bytes], None],
        accept: Callable[[Mapping[str, str]], None],
    ) -> None:
        """GetObject of `length` bytes from `start`, its body handed to `sink` (see
        `Transport.get_to`); If-Match when set."""
        path, headers = self._get_request(key, start, length, if_match)
        self._transport.get_to(path, headers, sink, accept, _failure)

    def _get_request(
        self, key: str, start: int | None, length: int | None, if_match: str
    ) -> tuple[str, dict[str, str]]:
        """The path and signed headers of a GetObject (a range when both are given)."""
        headers: dict[str, str] = {}
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        if start is not None and length is not None:
            headers["Range"] = f"bytes={start}-{start + length - 1}"
        path = self._path(key)
        return path, self._signed("GET", path, headers)

    def put(
        self,
        key: str,
        body: bytes,
        checksum: Mapping[str, str],
        metadata: Mapping[str, str],
    ) -> Mapping[str, str]:
        """PutObject; the answer's headers (ETag, checksums), names lowercase."""
        headers = {"Content-Length": str(len(body)), **checksum}
        headers.update({META_PREFIX + k.lower(): v for k, v in metadata.items()})
        return self._send("PUT", self._path(key), headers, body).headers

    def upload_part(
        self, key: str, upload_id: str, number: int, body: PartBytes, checksum: Any
    ) -> str:
        """UploadPart; the part's ETag (quotes stripped)."""
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='-_.~')}"
        headers = {"Content-Length": str(len(body)), **checksum}
        reply = self._send("PUT", self._path(key, query), headers, body)
        return str(reply.headers.get("etag", "")).strip('"')

    # --- the control path ------------------------------------------------------------------

    def head(self, key: str, checksum_mode: bool) -> Mapping[str, str]:
        """HeadObject; its headers (names lowercase). `checksum_mode`: ask for the
        checksums the server keeps (x-amz-checksum-mode: ENABLED)."""
        headers = {"x-amz-checksum-mode": "ENABLED"} if checksum_mode else {}
        return self._send("HEAD", self._path(key), headers).headers

    def head_bucket(self) -> None:
        """HeadBucket: HttpFailure 404 when the bucket does not exist."""
        self._send("HEAD", self._bucket_path(), {})

    def delete(self, key: str) -> None:
        """DeleteObject (S3 answers 204 whether or not the key existed)."""
        self._send("DELETE", self._path(key), {})

    def create_upload(
        self, key: str, metadata: Mapping[str, str], checksum_algorithm: str = ""
    ) -> str:
        """CreateMultipartUpload; its UploadId. `checksum_algorithm` (e.g. SHA256) is
        declared for every part of the upload."""
        headers = {META_PREFIX + k.lower(): v for k, v in metadata.items()}
        if checksum_algorithm:
            headers["x-amz-checksum-algorithm"] = checksum_algorithm
        reply = self._send("POST", self._path(key, "uploads"), headers, b"")
        return _read(parse_upload_id, reply)

    def list_parts(self, key: str, upload_id: str) -> list[ListedPart]:
        """ListParts, every page, in the server's order."""
        parts: list[ListedPart] = []
        markers: dict[str, str] = {}
        while True:
            query = _query({"uploadId": upload_id, **markers})
            page = _read(parse_parts, self._send("GET", self._path(key, query), {}))
            parts.extend(page.items)
            if page.next_markers is None:
                return parts
            markers = page.next_markers

    def complete_upload(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str, str]]
    ) -> str:
        """CompleteMultipartUpload of (number, etag, base64 SHA-256 or "") parts; the ETag
        of the object it made ("" if the answer gives none)."""
        body = complete_body(parts)
        headers = {"Content-Length": str(len(body))}
        path = self._path(key, _query({"uploadId": upload_id}))
        return _read(parse_etag, self._checked_ok(self._send("POST", path, headers, body)))

    def abort_upload(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload (HttpFailure NoSuchUpload if it is gone)."""
        self._send("DELETE", self._path(key, _query({"uploadId": upload_id})), {})

    def list_uploads(self, prefix: str, markers: Mapping[str, str]) -> Page[ListedUpload]:
        """One ListMultipartUploads page under `prefix`, from `markers` (the last page's).
        No ``encoding-type``: boto3 asks for it on the object listings only, and a key is
        decoded only where an answer says it is encoded (`replies`)."""
        params = {**markers}
        if prefix:
            params["prefix"] = prefix
        path = f"{self._bucket_path()}?uploads" + (f"&{_query(params)}" if params else "")
        return _read(parse_uploads, self._send("GET", path, {}))

    def copy_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        source: str,
        byte_range: tuple[int, int],
        if_match: str,
    ) -> str:
        """UploadPartCopy of bytes [start, end) of `source` (a key of this bucket) when its
        ETag is `if_match`; the CopyPartResult ETag, "" when the answer holds none."""
        start, end = byte_range
        headers = {
            # as botocore quotes it: bucket/key, "/" kept
            "x-amz-copy-source": quote(f"{self._bucket}/{source}", safe="/~"),
            "x-amz-copy-source-range": f"bytes={start}-{end - 1}",
            "x-amz-copy-source-if-match": f'"{if_match}"',
        }
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='-_.~')}"
        # an empty body, sent as Content-Length: 0 (as boto3 does; rclone serve s3 refuses a
        # PUT without one)
        reply = self._checked_ok(self._send("PUT", self._path(key, query), headers, b""))
        return _read(parse_etag, reply)

    def _bucket_path(self) -> str:
        return self._prefix or "/"

    @staticmethod
    def _checked_ok(reply: Reply) -> Reply:
        """`reply`, unless its 200 carries an <Error> (see `replies`)."""
        error = error_in_ok(reply.body)
        if error is not None:
            raise HttpFailure(reply.status, error[0], error[1], None, dict(reply.headers))
        return reply


def _query(params: Mapping[str, str]) -> str:
    """A query string encoded as SigV4 canonicalises it (RFC 3986, sorted)."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )


def _read(parse: Callable[[bytes], T], reply: Reply) -> T:
    """A 2xx answer's body read by `parse`; one that is not the XML it should be (cut, not
    XML, or missing what the operation returns) is the server's failure, not a bug: an
    `HttpFailure` naming it, which the connector maps like any refusal."""
    try:
        return parse(reply.body)
    except (ET.ParseError, ValueError) as exc:
        raise HttpFailure(
            reply.status, "UnreadableAnswer", f"the answer is not the XML S3 sends ({exc})",
            None, dict(reply.headers),
        ) from None  # fmt: skip


def _failure(status: int, headers: Mapping[str, str], body: bytes) -> HttpFailure:
    """The S3 error a reply carries: <Error><Code>/<Message> in its body (a HEAD or an
    empty body gives the status alone)."""
    code, message = "", ""
    if body:
        try:
            root = ET.fromstring(body)
            code = root.findtext("Code") or ""
            message = root.findtext("Message") or ""
        except ET.ParseError:
            message = body[:200].decode("utf-8", "replace")
    return HttpFailure(status, code, message, retry_after(headers), dict(headers))

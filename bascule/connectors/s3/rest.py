"""The S3 requests that carry object data, over `bascule.connectors.http` (see there why).

GetObject (whole or a range, If-Match), PutObject, UploadPart and ListObjectsV2 (whose
answer botocore parses at about 0.12 ms of CPU per object listed; ElementTree, in C, at a
tenth of that), signed by `sigv4.S3Signer` (the signature botocore's `S3SigV4Auth` makes,
at a seventh of its cost) with the credentials the connector's boto3 session resolved, so
that both paths authenticate the same way. The payload is never hashed for the signature
(``UNSIGNED-PAYLOAD``, as boto3 does over HTTPS when a checksum header is present): every
write carries a checksum header instead (Content-MD5 or x-amz-checksum-sha256, per the
provider's quirks), which is signed and which the server checks where it can.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from botocore.credentials import Credentials
from botocore.utils import percent_encode

from bascule.connectors.base import ObjectInfo, PartBytes
from bascule.connectors.http import (
    HttpFailure,
    PoolSettings,
    Reply,
    Transport,
    retry_after,
)
from bascule.connectors.s3.sigv4 import S3Signer

META_PREFIX = "x-amz-meta-"


class S3Rest:
    """The data-path requests of one bucket. Thread-safe (one pool, shared)."""

    def __init__(
        self,
        base_url: str,
        region: str,
        credentials: Credentials,
        settings: PoolSettings,
    ) -> None:
        """`base_url`: where the bucket's objects are, e.g. ``https://b.s3.fr-par.scw.cloud``
        (virtual-hosted) or ``https://127.0.0.1:9000/b`` (path style)."""
        parts = urlsplit(base_url)
        self._prefix = parts.path.rstrip("/")
        self._transport = Transport(base_url, settings)
        self._signer = S3Signer(base_url, region, credentials)

    def _path(self, key: str, query: str = "") -> str:
        path = f"{self._prefix}/{percent_encode(key, safe='/~')}"
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
        return parse_listing(self._send("GET", path, {}).body)

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
        query = f"partNumber={number}&uploadId={percent_encode(upload_id)}"
        headers = {"Content-Length": str(len(body)), **checksum}
        reply = self._send("PUT", self._path(key, query), headers, body)
        return str(reply.headers.get("etag", "")).strip('"')


def _query(params: Mapping[str, str]) -> str:
    """A query string encoded as SigV4 canonicalises it (RFC 3986, sorted)."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )


def parse_listing(body: bytes) -> tuple[list[ObjectInfo], str | None]:
    """A ListObjectsV2 answer (keys URL-encoded, ``encoding-type=url``): its objects and the
    continuation token, None on the last page."""
    root = ET.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    objects = [
        ObjectInfo(
            key=unquote_plus(item.findtext(f"{ns}Key") or ""),  # as botocore decodes it
            size=int(item.findtext(f"{ns}Size") or 0),
            etag=(item.findtext(f"{ns}ETag") or "").strip('"'),
            last_modified=_iso_time(item.findtext(f"{ns}LastModified")),
        )
        for item in root.iter(f"{ns}Contents")
    ]
    truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken")
    return objects, (token if truncated and token else None)


def _iso_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


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

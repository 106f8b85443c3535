"""S3 and S3-compatible object storage: Scaleway, OVHcloud, AWS, MinIO, `rclone serve s3`,
moto.

Every request goes through `rest.S3Rest` (libcurl, bascule's own SigV4 signature). boto3 is
imported only where bascule cannot settle alone where the bucket is or which keys sign: no
explicit keys (the SDK's credential chain: environment, profile, role), no explicit endpoint
(AWS's own endpoint rules), or an addressing case `addressing.object_base_url` leaves to
botocore. The SDK then resolves, and bascule still sends.

Provider differences are data, in ``quirks/<provider>.yaml``, read by `presets` (endpoint per
region, addressing style, whether If-Match is honoured, which checksum header parts carry,
part and object limits: Scaleway takes at most 1,000 parts where AWS takes 10,000).

Who retries what: nothing in the connector. Every retry is decided by
`S3Connector.should_retry` and timed by `bascule.migration.retry` (capped backoff, jitter,
Retry-After), with the attempt budget kept in the journal. A transient error in the middle
of a listing ends the listing; the caller lists again.

Checksums: no aws-chunked trailers (OVHcloud rejects those, which recent SDKs send by
default); each part and each small put carries an explicit header:
x-amz-checksum-sha256 on Scaleway and AWS (the SHA-256 the caller computed for its journal,
sent as it is; multipart uploads then declare SHA256 when created and list each part's
checksum when completed), Content-MD5 elsewhere, or as the endpoint's `part_checksum` says.
A write the service refuses while it carries a SHA-256 says in its message how to fall back
to Content-MD5. `rclone serve s3` and moto accept these headers without always validating
them: bascule's own hashes are what verification relies on.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from bascule.connectors.base import (
    ByteRange,
    Capabilities,
    ObjectInfo,
    PartBytes,
    PartReceipt,
    PendingUpload,
    Sink,
    object_key_problem,
)
from bascule.connectors.http import HttpFailure, MappedReader, PoolSettings
from bascule.connectors.http_dates import http_date
from bascule.connectors.s3.addressing import object_base_url
from bascule.connectors.s3.errors import (
    WORDING,
    map_error,
    mapped_errors,
    sha256_refusal_hint,
)
from bascule.connectors.s3.presets import (
    endpoint_for,
    load_quirks,
    lowered_part_limit,
    with_part_checksum,
)
from bascule.connectors.s3.replies import ListedPart, ListedUpload, Page
from bascule.connectors.s3.rest import META_PREFIX, S3Rest
from bascule.connectors.s3.sigv4 import Credentials, StaticCredentials
from bascule.errors import (
    AccessDenied,
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
    TransientStorageError,
    UnsupportedOperation,
)

DEFAULT_LIST_PAGE_SIZE = 1000  # S3's own maximum for ListObjectsV2
TOKEN_PREFIX = "s3mpu1."
# Connections kept open per host, on each path: at least the concurrency of a run (a busy
# pool opens more, and drops them after use: a TLS handshake each).
MAX_CONNECTIONS = 64
READ_BUFFER_BYTES = 1024 * 1024  # reads of the data path: whole age chunks at a time
SHA256_HEADER = "x-amz-checksum-sha256"
T = TypeVar("T")


def _strip(etag: str) -> str:
    return etag.strip('"')


def _hex_b64(hex_digest: str) -> str:
    """A hex digest as S3's checksum headers carry it (base64); "" for ""."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode() if hex_digest else ""


def _md5_b64(data: PartBytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3Connector:
    """One S3 bucket. See the module docstring for retries and checksums.

    `list_pages_fetched` counts ListObjectsV2 requests made (for tests and progress)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        provider: str = "aws",
        max_parts: int | None = None,
        part_checksum: str | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        list_page_size: int = DEFAULT_LIST_PAGE_SIZE,
        ca_bundle: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._bucket = bucket
        self._quirks = with_part_checksum(load_quirks(provider), part_checksum)
        self._max_parts = lowered_part_limit(self._quirks, provider, max_parts)
        # False once a PutObject answer did not repeat its x-amz-checksum-sha256 (`put`).
        self._put_sha256_repeated = True
        self._region = region
        self._endpoint = endpoint_for(provider, region, endpoint_url)
        self._static = (
            StaticCredentials(access_key_id, secret_access_key, session_token)
            if access_key_id and secret_access_key
            else None
        )
        self._keys = (access_key_id, secret_access_key, session_token)
        # Without ca_bundle, AWS_CA_BUNDLE names the CAs to trust, as boto3 and the AWS CLI
        # read it; else certifi's bundle (`http`).
        trusted = ca_bundle or os.environ.get("AWS_CA_BUNDLE") or None
        self._pool_settings = PoolSettings(
            trusted, connect_timeout_s, read_timeout_s, max_connections
        )
        self._sdk_client: Any = None  # boto3's, made only where bascule cannot resolve alone
        self._sdk_session: Any = None
        self._sdk_lock = threading.Lock()
        self._rest: S3Rest | None = None
        self._rest_lock = threading.Lock()
        self.list_page_size = list_page_size
        self.list_pages_fetched = 0

    def _direct_url(self) -> str | None:
        """The objects' URL where bascule settles it alone (explicit keys, endpoint and
        region), else None."""
        if self._static is None or not self._endpoint or not self._region:
            return None
        return object_base_url(self._endpoint, self._bucket, self._quirks.addressing_style)

    def _sdk(self) -> Any:
        """boto3's client for this endpoint (imported and made on first use): its
        credential chain and endpoint rules, never its requests."""
        with self._sdk_lock:
            if self._sdk_client is None:
                import boto3
                from botocore.config import Config

                key_id, secret, token = self._keys
                self._sdk_session = boto3.session.Session(
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    aws_session_token=token,
                )
                self._sdk_client = self._sdk_session.client(
                    "s3",
                    endpoint_url=self._endpoint,
                    region_name=self._region,
                    config=Config(s3={"addressing_style": self._quirks.addressing_style}),
                    verify=self._pool_settings.ca_bundle,
                )
            return self._sdk_client

    def _data_path(self) -> S3Rest:
        """The requests' client, made on first use (credentials resolved then, as boto3
        does), on the very URL boto3 would send an object request to."""
        with self._rest_lock:
            if self._rest is None:
                self._rest = self._make_rest()
            return self._rest

    def _make_rest(self) -> S3Rest:
        base = self._direct_url()
        if base is not None and self._static is not None and self._region:
            return S3Rest(self._bucket, base, self._region, self._static, self._pool_settings)
        client = self._sdk()
        credentials: Credentials | None = self._static or self._sdk_session.get_credentials()
        if credentials is None:
            raise WORDING.error(AccessDenied, self.url, "", "no usable credentials")
        return S3Rest(
            self._bucket,
            _object_base_url(client, self._bucket),
            str(client.meta.region_name or "us-east-1"),
            credentials,
            self._pool_settings,
        )

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}"

    @property
    def endpoint_url(self) -> str:
        """The endpoint requests go to: the explicit one, else the one boto3 resolves
        (AWS_ENDPOINT_URL_S3, a profile's, AWS itself)."""
        if self._endpoint:
            return self._endpoint
        return str(self._sdk().meta.endpoint_url)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            resumable_parts=True,
            if_match_read=self._quirks.if_match_read,
            server_side_checksums=self._quirks.server_side_checksums,
            sorted_listing=True,  # ListObjectsV2 returns keys in UTF-8 binary order
            min_part_size=self._quirks.min_part_size_bytes,
            max_part_size=self._quirks.max_part_size_bytes,
            max_parts=self._max_parts,
            max_object_size=self._quirks.max_object_size_bytes,
            part_rewrite=self._quirks.part_rewrite,
            range_copy=self._quirks.upload_part_copy,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # The first page is fetched now, so a missing bucket raises here, not on next().
        first = self._list_page(prefix, None)
        return self._pages(prefix, first)

    def _list_page(
        self, prefix: str, token: str | None
    ) -> tuple[builtins.list[ObjectInfo], str | None]:
        self.list_pages_fetched += 1
        return self._data("", lambda rest: rest.list_page(prefix, token, self.list_page_size))

    def _pages(
        self, prefix: str, page: tuple[builtins.list[ObjectInfo], str | None]
    ) -> Iterator[ObjectInfo]:
        while True:
            objects, token = page
            yield from objects
            if token is None:
                return
            page = self._list_page(prefix, token)

    def stat(self, key: str) -> ObjectInfo:
        checksum_mode = self._quirks.server_side_checksums
        try:
            head = self._data(key, lambda rest: rest.head(key, checksum_mode))
        except ObjectNotFound:
            self._check_bucket()  # HEAD says 404 for a missing bucket and a missing key alike
            raise
        return self._info(key, head)

    def _check_bucket(self) -> None:
        try:
            self._data("", lambda rest: rest.head_bucket())
        except ObjectNotFound as exc:
            raise ContainerNotFound(
                f"bucket {self.url} does not exist; create it or fix the name", connector=self.url
            ) from exc

    @staticmethod
    def _info(key: str, head: Mapping[str, str]) -> ObjectInfo:
        """A HeadObject answer's headers (names lowercase), as an ObjectInfo."""
        checksums = {
            name: head[f"x-amz-checksum-{name}"]
            for name in ("sha256", "crc64nvme", "crc32c", "crc32")
            if head.get(f"x-amz-checksum-{name}")
        }
        return ObjectInfo(
            key=key,
            size=int(head.get("content-length", 0) or 0),
            etag=_strip(head.get("etag", "")),
            last_modified=http_date(head.get("last-modified")),
            checksums=checksums,
            metadata={
                k.removeprefix(META_PREFIX): v for k, v in head.items() if k.startswith(META_PREFIX)
            },
        )

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        """If-Match is sent and, since some servers ignore it, the ETag of the response is
        compared too: a changed object always raises PreconditionFailed."""
        if byte_range is not None and byte_range.length == 0:
            self._check_etag(key, self.stat(key).etag, if_match)
            return io.BytesIO(b"")
        start = byte_range.start if byte_range is not None else None
        length = byte_range.length if byte_range is not None else None
        try:
            response = self._data(key, lambda rest: rest.get(key, start, length, if_match or ""))
        except ConnectorError as exc:
            if not isinstance(exc.__cause__, HttpFailure) or exc.__cause__.code != "InvalidRange":
                raise
            # A range starting past the end: clipped to nothing, as the contract says.
            self._check_etag(key, self.stat(key).etag, if_match)
            return io.BytesIO(b"")
        headers, raw = response
        try:
            self._check_etag(key, _strip(headers.get("etag", "")), if_match)
        except PreconditionFailed:
            raw.close()
            raise
        if isinstance(raw, io.BytesIO):
            return raw
        mapped = MappedReader(raw, lambda exc: map_error(exc, self.url, key))
        return io.BufferedReader(mapped, buffer_size=READ_BUFFER_BYTES)

    def read_to(
        self, key: str, byte_range: ByteRange, sink: Sink, if_match: str | None = None
    ) -> None:
        """`PushReader`: `open_read`'s request and checks, the body handed to `sink`."""
        if byte_range.length == 0:
            self._check_etag(key, self.stat(key).etag, if_match)
            return

        def accept(headers: Mapping[str, str]) -> None:
            self._check_etag(key, _strip(headers.get("etag", "")), if_match)

        start, length = byte_range.start, byte_range.length
        try:
            self._data(
                key, lambda rest: rest.get_to(key, start, length, if_match or "", sink, accept)
            )
        except ConnectorError as exc:
            if not isinstance(exc.__cause__, HttpFailure) or exc.__cause__.code != "InvalidRange":
                raise
            self._check_etag(key, self.stat(key).etag, if_match)  # past the end: nothing

    def _data(self, key: str, call: Callable[[S3Rest], T]) -> T:
        """A request, its errors mapped."""
        try:
            return call(self._data_path())
        except mapped_errors() as exc:
            raise map_error(exc, self.url, key) from exc

    def _check_etag(self, key: str, etag: str, if_match: str | None) -> None:
        if if_match is not None and etag != if_match:
            raise PreconditionFailed(
                f"{self.url}/{key} changed: etag {etag}, expected {if_match}; re-plan the object",
                connector=self.url,
                key=key,
            )

    @property
    def _sha256_parts(self) -> bool:
        """Parts and small puts carry x-amz-checksum-sha256 (else Content-MD5)."""
        return self._quirks.part_checksum == "sha256"

    def _checksum_header(self, data: PartBytes, sha256: bytes | None = None) -> tuple[str, str]:
        """The header a write of `data` carries; `sha256`, the caller's digest of `data`,
        spares a second pass over it where that header is x-amz-checksum-sha256."""
        if self._sha256_parts:
            digest = sha256 if sha256 is not None else hashlib.sha256(data).digest()
            return SHA256_HEADER, base64.b64encode(digest).decode()
        return "Content-MD5", _md5_b64(data)

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        """One PutObject (read into memory to compute its checksum: for small objects).

        Layer 2 of integrity without a second request: where the checksum sent is Content-MD5,
        the ETag S3 answers for a single PutObject is the MD5 of what it stored, which must be
        the one sent; where it is x-amz-checksum-sha256, the answer repeats the checksum the
        server checked the body against (AWS does). A server that does not repeat it gets
        Content-MD5 on the puts that follow, rather than a HEAD after each (`rclone serve
        s3`). Otherwise (an ETag that is not an MD5, as under KMS encryption, or no checksum
        repeated) the object is stat'ed and its size checked."""
        payload = data.read(size)
        if self._put_sha256_repeated:
            name, value = self._checksum_header(payload, sha256)
        else:
            name, value = "Content-MD5", _md5_b64(payload)
        meta = dict(metadata or {})
        with sha256_refusal_hint(name == SHA256_HEADER):
            headers = self._data(key, lambda rest: rest.put(key, payload, {name: value}, meta))
        etag = _strip(str(headers.get("etag", "")))
        if name == SHA256_HEADER and headers.get(SHA256_HEADER) != value:
            self._put_sha256_repeated = False
        if (name == "Content-MD5" and etag == base64.b64decode(value).hex()) or (
            name == SHA256_HEADER and headers.get(SHA256_HEADER) == value
        ):
            return ObjectInfo(key=key, size=len(payload), etag=etag, metadata=meta)
        info = self.stat(key)
        if info.size != len(payload):
            raise TransientStorageError(
                f"{self.url}/{key} holds {info.size} bytes after a put of {len(payload)}; the "
                "write is sent again",
                connector=self.url,
                key=key,
            )
        return info

    def delete(self, key: str) -> None:
        self._data(key, lambda rest: rest.delete(key))

    def should_retry(self, exc: BaseException) -> bool:
        """Throttling (429, 503 SlowDown), 5xx and connection errors; never other 4xx."""
        return map_error(exc, self.url).retryable

    def key_problem(self, key: str) -> str | None:
        """A key is UTF-8 of at most 1,024 bytes (the S3 API's limit), and holds no "." or
        ".." segment: servers backed by a file system (rclone serve s3, MinIO) and HTTP
        stacks resolve them, so the object would be stored under another key."""
        return object_key_problem(key, self.capabilities.max_key_bytes)

    # --- PartWriterOpener ----------------------------------------------------------------

    def open_writer(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,
        resume_token: str | None = None,
        *,
        check: bool = True,
    ) -> S3PartWriter:
        """CreateMultipartUpload, or reattach to one (ObjectNotFound if it is gone).

        Where parts carry x-amz-checksum-sha256, the upload declares SHA256 when it is
        created: AWS refuses such a part in an upload created without an algorithm
        ("Checksum Type mismatch occurred, expected checksum Type: null", as reported in
        apache/arrow-rs#6793 and apache/opendal#4533)."""
        if resume_token is None:
            declared = "SHA256" if self._sha256_parts else ""
            meta = dict(metadata or {})
            with sha256_refusal_hint(self._sha256_parts):
                upload_id = self._data(key, lambda rest: rest.create_upload(key, meta, declared))
            return S3PartWriter(self, key, upload_id)
        writer = S3PartWriter(self, key, _upload_id(resume_token, self.url, key))
        if check:
            writer.list_parts()  # NoSuchUpload -> ObjectNotFound
        return writer

    def list_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        markers: dict[str, str] = {}
        while True:
            try:
                page = self._uploads_page(prefix, markers)
            except ObjectNotFound:
                return  # `rclone serve s3` answers NoSuchUpload when there is none
            for upload in page.items:
                token = TOKEN_PREFIX + _b64(upload.upload_id)
                yield PendingUpload(upload.key, token, upload.initiated)
            if page.next_markers is None:
                return
            markers = page.next_markers

    def _uploads_page(self, prefix: str, markers: Mapping[str, str]) -> Page[ListedUpload]:
        return self._data("", lambda rest: rest.list_uploads(prefix, markers))

    def abort_upload(self, key: str, resume_token: str) -> None:
        upload_id = _upload_id(resume_token, self.url, key)
        with contextlib.suppress(ObjectNotFound):  # already aborted or committed
            self._data(key, lambda rest: rest.abort_upload(key, upload_id))

    # --- RangeCopier -----------------------------------------------------------------------

    def copy_part(
        self,
        key: str,
        resume_token: str,
        number: int,
        source_key: str,
        byte_range: ByteRange,
        if_match: str,
    ) -> PartReceipt:
        """UploadPartCopy of `byte_range` of `source_key` (CopySourceIfMatch = `if_match`).

        An answer without a CopyPartResult ETag is refused: `rclone serve s3` answers 200
        and stores an empty part instead of copying, which a commit would publish."""
        if not self._quirks.upload_part_copy:
            raise UnsupportedOperation(
                f"{self.url}/{key}: this S3 server does not implement UploadPartCopy",
                connector=self.url,
                key=key,
            )
        upload_id = _upload_id(resume_token, self.url, key)
        span = (byte_range.start, byte_range.end)
        etag = self._data(
            key, lambda rest: rest.copy_part(key, upload_id, number, source_key, span, if_match)
        )
        if not etag:
            raise UnsupportedOperation(
                f"{self.url}/{key}: the server answered UploadPartCopy without copying "
                "(no CopyPartResult); it does not implement server-side copy",
                connector=self.url,
                key=key,
            )
        return PartReceipt(number, byte_range.length, etag)


class _Captured(Exception):
    """Raised by `_object_base_url`'s hook to stop a request before it is sent."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _object_base_url(client: Any, bucket: str) -> str:
    """The URL boto3 sends an object request of `bucket` to, less the key: its own
    endpoint resolution (region, virtual-hosted or path style, an IP endpoint's path style),
    read off a HeadObject stopped before it is sent."""

    def capture(request: Any, **_: Any) -> None:
        raise _Captured(str(request.url))

    event = "before-send.s3.HeadObject"
    client.meta.events.register_first(event, capture)
    try:
        client.head_object(Bucket=bucket, Key="k")
    except _Captured as captured:
        return captured.url.split("?", 1)[0].removesuffix("/k")
    finally:
        client.meta.events.unregister(event, capture)
    raise AssertionError("boto3 sent a request past its before-send hook")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _upload_id(token: str, url: str, key: str) -> str:
    if not token.startswith(TOKEN_PREFIX):
        raise ObjectNotFound(
            f"resume token for {url}/{key} is not an S3 upload token; start the object again",
            connector=url,
            key=key,
        )
    return base64.urlsafe_b64decode(token.removeprefix(TOKEN_PREFIX)).decode()


class S3PartWriter:
    """One multipart upload; see `PartWriter`. The upload id stays inside the token."""

    def __init__(self, owner: S3Connector, key: str, upload_id: str) -> None:
        self._owner = owner
        self._key = key
        self._upload_id = upload_id

    @property
    def resume_token(self) -> str:
        return TOKEN_PREFIX + _b64(self._upload_id)

    def write_part(
        self, number: int, data: PartBytes, *, sha256: bytes | None = None
    ) -> PartReceipt:
        """UploadPart with an explicit checksum header; rewriting a number replaces it."""
        owner = self._owner
        header = dict([owner._checksum_header(data, sha256)])
        with sha256_refusal_hint(owner._sha256_parts):
            etag = owner._data(
                self._key,
                lambda rest: rest.upload_part(self._key, self._upload_id, number, data, header),
            )
        return PartReceipt(number, len(data), etag)

    def list_parts(self) -> builtins.list[PartReceipt]:
        receipts = [PartReceipt(p.number, p.size, p.etag) for p in self._listed_parts()]
        return sorted(receipts, key=lambda r: r.number)

    def _listed_parts(self) -> builtins.list[ListedPart]:
        """ListParts, every page."""
        key, upload_id = self._key, self._upload_id
        return self._owner._data(key, lambda rest: rest.list_parts(key, upload_id))

    def commit(self, parts: Sequence[PartReceipt]) -> ObjectInfo:
        """CompleteMultipartUpload; ConnectorError (InvalidPart) if a part is missing. The
        answer's ETag and the parts' total size: the caller stats the object to know what
        the target holds.

        An upload created with SHA256 must list each part's checksum (AWS: "The upload was
        created using a sha256 checksum. The complete request must include the checksum for
        each part"): they are taken from ListParts, which reports what the server checked
        when the part arrived (copied parts included), so a resumed upload has them too;
        where it reports none for a part, from the receipt's `sha256` (the journal's digest
        of the bytes sent, the checksum that part carried)."""
        sha256 = self._owner._sha256_parts
        sums = {p.number: p.sha256 for p in self._listed_parts() if p.sha256} if sha256 else {}
        listing = [
            (r.number, r.etag, (sums.get(r.number) or _hex_b64(r.sha256)) if sha256 else "")
            for r in parts
        ]
        key, upload_id = self._key, self._upload_id
        with sha256_refusal_hint(sha256):
            etag = self._owner._data(
                key, lambda rest: rest.complete_upload(key, upload_id, listing)
            )
        # No HeadObject here: every caller stats the object itself (layer 2 of integrity),
        # and a HEAD costs `rclone serve s3` an MD5 of the whole object (0.3 s per 256 MiB).
        return ObjectInfo(key=key, size=sum(r.size for r in parts), etag=etag)

    def abort(self) -> None:
        self._owner.abort_upload(self._key, self.resume_token)


if TYPE_CHECKING:
    from bascule.connectors.base import Connector, PartWriter, PartWriterOpener, RangeCopier

    def _typecheck(connector: S3Connector, writer: S3PartWriter) -> None:
        _c: Connector = connector
        _o: PartWriterOpener = connector
        _r: RangeCopier = connector
        _w: PartWriter = writer

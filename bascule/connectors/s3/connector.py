"""S3 and S3-compatible object storage on boto3: Scaleway, OVHcloud, AWS, MinIO,
`rclone serve s3`, moto.

Provider differences are data, in ``quirks/<provider>.yaml``, read by `presets` (endpoint per
region, addressing style, whether If-Match is honoured, which checksum header parts carry,
part and object limits: Scaleway takes at most 1,000 parts where AWS takes 10,000).

Who retries what: botocore's own retries are off by default (``sdk_max_attempts=1``, standard
mode): every retry is decided by `S3Connector.should_retry` and timed by
`bascule.migration.retry` (capped backoff, jitter, Retry-After), with the attempt budget kept
in the journal. Raising `sdk_max_attempts` is for callers with no outer retry layer; never do
both. A transient error in the middle of a listing ends the listing; the caller lists again.

Checksums: the SDK's automatic checksums are limited to what S3 requires
(``when_required``), because OVHcloud rejects the aws-chunked trailers recent SDKs send by
default; instead each part and each small put carries an explicit header:
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
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import boto3
import botocore.exceptions
import urllib3.exceptions
from botocore.config import Config

from bascule.connectors.base import (
    ByteRange,
    Capabilities,
    ErrorWording,
    ObjectInfo,
    PartBytes,
    PartReceipt,
    PendingUpload,
    Sink,
    object_key_problem,
    status_error,
)
from bascule.connectors.http import NETWORK_ERRORS as HTTP_NETWORK_ERRORS
from bascule.connectors.http import HttpFailure, MappedReader, PoolSettings
from bascule.connectors.s3.presets import (
    endpoint_for,
    load_quirks,
    lowered_part_limit,
    with_part_checksum,
)
from bascule.connectors.s3.rest import S3Rest
from bascule.errors import (
    AccessDenied,
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
    Throttled,
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

# S3 error codes, by the bascule class they map to; read before the HTTP status.
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
DENIED_CODES = frozenset(
    {
        "AccessDenied",  # policy refuses the action
        "InvalidAccessKeyId",  # unknown access key
        "SignatureDoesNotMatch",  # wrong secret key
        "AllAccessDisabled",
        "403",
    }
)
THROTTLE_CODES = frozenset(
    {
        "SlowDown",  # 503: request rate too high for the prefix; back off
        "ServiceUnavailable",  # 503: "reduce your request rate"
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",  # 429 on several S3-compatible providers
        "RequestThrottled",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",  # 500: "try again"
        "RequestTimeout",  # 400: the socket idled; resend
        "RequestTimeTooSkewed",  # clock drift fixed by a re-signed retry
    }
)
CODE_ERRORS: Mapping[str, type[ConnectorError]] = {
    "NoSuchBucket": ContainerNotFound,
    "PreconditionFailed": PreconditionFailed,
    # e.g. `rclone serve s3` refusing to replace a part already streamed with new bytes
    "NotImplemented": UnsupportedOperation,
    **dict.fromkeys(NOT_FOUND_CODES, ObjectNotFound),
    **dict.fromkeys(DENIED_CODES, AccessDenied),
    **dict.fromkeys(THROTTLE_CODES, Throttled),
    **dict.fromkeys(TRANSIENT_CODES, TransientStorageError),
}
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    *HTTP_NETWORK_ERRORS,  # the data path's (libcurl): refused, reset, cut, timed out
    botocore.exceptions.ConnectionError,  # refused, reset, closed, timeouts
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ResponseStreamingError,  # connection cut mid-body
    botocore.exceptions.IncompleteReadError,  # body shorter than its Content-Length
    urllib3.exceptions.HTTPError,  # raised by a body read after the call returned
    ConnectionError,
    TimeoutError,
)
# What the connector catches and maps: the SDK's own exceptions, and the OS errors a socket
# raises. Anything else is a bug and propagates unchanged.
SDK_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    urllib3.exceptions.HTTPError,
    OSError,
)
# The data path's: its own failures, and the same transport errors.
DATA_ERRORS: tuple[type[BaseException], ...] = (HttpFailure, *SDK_ERRORS)
WORDING = ErrorWording("S3", "bucket", "the access key, secret and policy")


def _map_error(exc: BaseException, url: str, key: str = "") -> ConnectorError:
    """The single place where boto3/botocore/urllib3 exceptions, and the data path's
    `HttpFailure`, become bascule errors.

    Total, so `should_retry` may ask about anything: an exception that is not one of
    `SDK_ERRORS` comes back as a permanent ConnectorError (the methods never pass one)."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, HttpFailure):
        cls = CODE_ERRORS.get(exc.code) or status_error(exc.status) or ConnectorError
        return WORDING.error(cls, url, key, str(exc), retry_after_s=exc.retry_after_s)
    if isinstance(exc, botocore.exceptions.ClientError):
        return _map_client_error(exc, url, key)
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return WORDING.error(AccessDenied, url, key, "no usable credentials")
    if isinstance(exc, NETWORK_ERRORS):
        return WORDING.network_error(url, key, exc)
    return WORDING.error(ConnectorError, url, key, str(exc) or type(exc).__name__)


def _map_client_error(exc: botocore.exceptions.ClientError, url: str, key: str) -> ConnectorError:
    error = exc.response.get("Error", {})
    code = _error_code(exc)
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode", 0) or 0)
    detail = f"{code or status}: {error.get('Message', '')}".strip()
    cls = CODE_ERRORS.get(code) or status_error(status) or ConnectorError
    retry_after = _retry_after(meta.get("HTTPHeaders", {}).get("retry-after"))
    return WORDING.error(cls, url, key, detail, retry_after_s=retry_after)


SHA256_REFUSED_HINT = (
    "this endpoint's writes carry x-amz-checksum-sha256 (part_checksum: sha256); if the "
    "service refuses that header, set part_checksum: content-md5 on the endpoint (the next "
    "run sends the objects of its unfinished uploads again, under Content-MD5)"
)


@contextlib.contextmanager
def _sha256_refusal_hint(applies: bool) -> Iterator[None]:
    """Where `applies` (the write carries x-amz-checksum-sha256, or the upload declares
    SHA256), a refusal for good that names no other cause (not a 403, 404, 412, throttling
    or a server error) says how to fall back to Content-MD5 in its one line."""
    try:
        yield
    except ConnectorError as exc:
        if not applies or exc.retryable or type(exc) not in (ConnectorError, UnsupportedOperation):
            raise
        raise type(exc)(
            f"{exc}; {SHA256_REFUSED_HINT}", connector=exc.connector, key=exc.key
        ) from exc


def _error_code(exc: BaseException | None) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _retry_after(value: object) -> float | None:
    try:
        return max(0.0, float(str(value)))
    except ValueError:
        return None  # absent, or an HTTP date (S3-compatible servers send seconds)


class _Body(io.RawIOBase):
    """A response body as a raw stream; errors during reads are mapped too."""

    def __init__(self, body: Any, url: str, key: str) -> None:
        self._body = body
        self._url = url
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk = self._body.read(len(buffer))
        except SDK_ERRORS as exc:
            raise _map_error(exc, self._url, self._key) from exc
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._body.close()
        super().close()


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
        sdk_max_attempts: int = 1,
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
        config = Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "total_max_attempts": sdk_max_attempts},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            s3={"addressing_style": self._quirks.addressing_style},
            max_pool_connections=max_connections,
        )
        # Credentials not given here come from the SDK's own chain (env, profile, role); the
        # data path signs with the same session's.
        self._session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
        )
        self._client = self._session.client(
            "s3",
            endpoint_url=endpoint_for(provider, region, endpoint_url),
            region_name=region,
            config=config,
            verify=ca_bundle,  # a PEM file of the CAs to trust; None: the system's store
        )
        self._pool_settings = PoolSettings(
            ca_bundle, connect_timeout_s, read_timeout_s, max_connections
        )
        self._rest: S3Rest | None = None
        self._rest_lock = threading.Lock()
        self.list_page_size = list_page_size
        self.list_pages_fetched = 0

    def _data_path(self) -> S3Rest:
        """The data path's client, made on first use (credentials resolved then, as boto3
        does), on the very URL boto3 would send an object request to."""
        with self._rest_lock:
            if self._rest is None:
                credentials = self._session.get_credentials()
                if credentials is None:
                    raise WORDING.error(AccessDenied, self.url, "", "no usable credentials")
                self._rest = S3Rest(
                    _object_base_url(self._client, self._bucket),
                    str(self._client.meta.region_name or "us-east-1"),
                    credentials,
                    self._pool_settings,
                )
            return self._rest

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}"

    @property
    def endpoint_url(self) -> str:
        """The endpoint the client sends requests to, as boto3 resolved it."""
        return str(self._client.meta.endpoint_url)

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

    def _call(self, method: str, key: str = "", **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(Bucket=self._bucket, **kwargs)
        except SDK_ERRORS as exc:
            raise _map_error(exc, self.url, key) from exc

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
        extra = {"ChecksumMode": "ENABLED"} if self._quirks.server_side_checksums else {}
        try:
            head = self._call("head_object", key, Key=key, **extra)
        except ObjectNotFound:
            self._check_bucket()  # HEAD says 404 for a missing bucket and a missing key alike
            raise
        return self._info(key, head)

    def _check_bucket(self) -> None:
        try:
            self._call("head_bucket")
        except ObjectNotFound as exc:
            raise ContainerNotFound(
                f"bucket {self.url} does not exist; create it or fix the name", connector=self.url
            ) from exc

    @staticmethod
    def _info(key: str, head: Mapping[str, Any]) -> ObjectInfo:
        checksums = {
            name.removeprefix("Checksum").lower(): str(head[name])
            for name in ("ChecksumSHA256", "ChecksumCRC64NVME", "ChecksumCRC32C", "ChecksumCRC32")
            if head.get(name)
        }
        return ObjectInfo(
            key=key,
            size=int(head.get("ContentLength", 0)),
            etag=_strip(head.get("ETag", "")),
            last_modified=head.get("LastModified"),
            checksums=checksums,
            metadata={k.lower(): v for k, v in head.get("Metadata", {}).items()},
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
        mapped = MappedReader(raw, lambda exc: _map_error(exc, self.url, key))
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
        """A data-path request, its errors mapped like the SDK's."""
        try:
            return call(self._data_path())
        except DATA_ERRORS as exc:
            raise _map_error(exc, self.url, key) from exc

    def _check_etag(self, key: str, etag: str, if_match: str | None) -> None:
        if if_match is not None and etag != if_match:
            raise PreconditionFailed(
                f"{self.url}/{key} changed: etag {etag}, expected {if_match}; re-plan the object",
                connector=self.url,
                key=key,
            )

    def _checksum_args(self, data: bytes) -> dict[str, str]:
        """The checksum parameter of an SDK call writing `data` (see `_checksum_header`)."""
        name, value = self._checksum_header(data)
        return {"ChecksumSHA256" if name == SHA256_HEADER else "ContentMD5": value}

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
        with _sha256_refusal_hint(name == SHA256_HEADER):
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
        self._call("delete_object", key, Key=key)

    def should_retry(self, exc: BaseException) -> bool:
        """Throttling (429, 503 SlowDown), 5xx and connection errors; never other 4xx."""
        return _map_error(exc, self.url).retryable

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
            declared = {"ChecksumAlgorithm": "SHA256"} if self._sha256_parts else {}
            with _sha256_refusal_hint(self._sha256_parts):
                created = self._call(
                    "create_multipart_upload",
                    key,
                    Key=key,
                    Metadata=dict(metadata or {}),
                    **declared,
                )
            return S3PartWriter(self, key, str(created["UploadId"]))
        writer = S3PartWriter(self, key, _upload_id(resume_token, self.url, key))
        if check:
            writer.list_parts()  # NoSuchUpload -> ObjectNotFound
        return writer

    def list_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        markers: dict[str, str] = {}
        while True:
            try:
                page = self._call("list_multipart_uploads", Prefix=prefix, **markers)
            except ObjectNotFound:
                return  # `rclone serve s3` answers NoSuchUpload when there is none

            for upload in page.get("Uploads", []):
                token = TOKEN_PREFIX + _b64(upload["UploadId"])
                yield PendingUpload(upload["Key"], token, upload.get("Initiated"))
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }

    def abort_upload(self, key: str, resume_token: str) -> None:
        upload_id = _upload_id(resume_token, self.url, key)
        with contextlib.suppress(ObjectNotFound):  # already aborted or committed
            self._call("abort_multipart_upload", key, Key=key, UploadId=upload_id)

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
        response = self._call(
            "upload_part_copy",
            key,
            Key=key,
            UploadId=_upload_id(resume_token, self.url, key),
            PartNumber=number,
            CopySource={"Bucket": self._bucket, "Key": source_key},
            CopySourceRange=f"bytes={byte_range.start}-{byte_range.end - 1}",
            CopySourceIfMatch=f'"{if_match}"',
        )
        etag = _strip(str(response.get("CopyPartResult", {}).get("ETag", "")))
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

    def _call(self, method: str, **kwargs: Any) -> Any:
        return self._owner._call(
            method, self._key, Key=self._key, UploadId=self._upload_id, **kwargs
        )

    def write_part(
        self, number: int, data: PartBytes, *, sha256: bytes | None = None
    ) -> PartReceipt:
        """UploadPart with an explicit checksum header; rewriting a number replaces it."""
        owner = self._owner
        header = dict([owner._checksum_header(data, sha256)])
        with _sha256_refusal_hint(owner._sha256_parts):
            etag = owner._data(
                self._key,
                lambda rest: rest.upload_part(self._key, self._upload_id, number, data, header),
            )
        return PartReceipt(number, len(data), etag)

    def list_parts(self) -> builtins.list[PartReceipt]:
        receipts = [
            PartReceipt(int(p["PartNumber"]), int(p["Size"]), _strip(p.get("ETag", "")))
            for p in self._listed_parts()
        ]
        return sorted(receipts, key=lambda r: r.number)

    def _listed_parts(self) -> Iterator[Mapping[str, Any]]:
        """ListParts, every page."""
        marker: dict[str, int] = {}
        while True:
            page = self._call("list_parts", **marker)
            yield from page.get("Parts", [])
            if not page.get("IsTruncated"):
                return
            marker = {"PartNumberMarker": int(page["NextPartNumberMarker"])}

    def commit(self, parts: Sequence[PartReceipt]) -> ObjectInfo:
        """CompleteMultipartUpload; ConnectorError (InvalidPart) if a part is missing.

        An upload created with SHA256 must list each part's checksum (AWS: "The upload was
        created using a sha256 checksum. The complete request must include the checksum for
        each part"): they are taken from ListParts, which reports what the server checked
        when the part arrived (copied parts included), so a resumed upload has them too;
        where it reports none for a part, from the receipt's `sha256` (the journal's digest
        of the bytes sent, the checksum that part carried)."""
        sha256 = self._owner._sha256_parts
        sums = self._part_checksums() if sha256 else {}
        listing: builtins.list[dict[str, object]] = []
        for r in parts:
            entry: dict[str, object] = {"PartNumber": r.number, "ETag": f'"{r.etag}"'}
            checksum = (sums.get(r.number) or _hex_b64(r.sha256)) if sha256 else ""
            if checksum:
                entry["ChecksumSHA256"] = checksum
            listing.append(entry)
        with _sha256_refusal_hint(self._owner._sha256_parts):
            self._call("complete_multipart_upload", MultipartUpload={"Parts": listing})
        return self._owner.stat(self._key)

    def _part_checksums(self) -> dict[int, str]:
        """Part number -> the ChecksumSHA256 that ListParts reports (servers that keep none,
        such as moto, report nothing: `commit` then lists the receipts' own)."""
        return {
            int(p["PartNumber"]): str(p["ChecksumSHA256"])
            for p in self._listed_parts()
            if p.get("ChecksumSHA256")
        }

    def abort(self) -> None:
        self._owner.abort_upload(self._key, self.resume_token)


if TYPE_CHECKING:
    from bascule.connectors.base import Connector, PartWriter, PartWriterOpener, RangeCopier

    def _typecheck(connector: S3Connector, writer: S3PartWriter) -> None:
        _c: Connector = connector
        _o: PartWriterOpener = connector
        _r: RangeCopier = connector
        _w: PartWriter = writer

"""Azure Blob Storage (and Azurite) on azure-storage-blob.

Part writes are staged blocks (Put Block) published by one Put Block List. Block ids are
derived from the upload's resume token and the part number (fixed length, base64), so a
restarted process finds its blocks again with `get_block_list("uncommitted")`; the ids never
leave this module.

Aborting: Azure has no "abort" for staged blocks; uncommitted blocks are garbage-collected
after 7 days, or discarded when the blob is next committed. `abort` therefore:
- if the blob was never committed: deletes it (Azurite), or, where the service refuses to
  delete a blob that has no committed content, commits an empty block list only if the blob
  is still missing (If-None-Match: *) and deletes that empty blob at once (If-Match), which
  discards every staged block and can never clobber an object someone else committed;
- if a committed blob made of blocks exists under the key: commits its current block list
  again under If-Match, which keeps its content and discards the staged blocks;
- if the committed blob was written in one Put Blob (no block list), nothing can discard the
  staged blocks without rewriting the blob: they stay until the next write or 7 days.
One upload per key at a time: aborting drops every staged block of that blob.

Who retries what: the SDK's retry policy is off by default (``sdk_retry_total=0``); retries are
decided by `should_retry` and timed by `bascule.migration.retry`.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import io
import re
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient

from bascule.connectors.azure import account
from bascule.connectors.azure.rest import Auth, Bearer, BlobRest, ListedBlob, Sas, SharedKey
from bascule.connectors.base import (
    ByteRange,
    Capabilities,
    ErrorWording,
    GiB,
    MiB,
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
from bascule.errors import (
    AccessDenied,
    ConfigError,
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
    Throttled,
    TransientStorageError,
)

DEFAULT_LIST_PAGE_SIZE = 5000  # the service's maximum per List Blobs call
# Blob names: "Naming and Referencing Containers, Blobs, and Metadata" (Azure REST docs).
MAX_BLOB_NAME_CHARS = 1024
MAX_BLOB_SEGMENTS = 254
TOKEN_PREFIX = "az1."
_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")

# Error codes, by the bascule class they map to; read before the HTTP status.
# https://learn.microsoft.com/rest/api/storageservices/blob-service-error-codes
DENIED_CODES = frozenset(
    {
        "AuthenticationFailed",  # wrong account key or SAS signature
        "AuthorizationFailure",  # Azurite's answer to a wrong key; also firewall refusals
        "AuthorizationPermissionMismatch",  # RBAC role lacks the action
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
    }
)
THROTTLE_CODES = frozenset({"ServerBusy", "TooManyRequests"})  # 503/429: back off
TRANSIENT_CODES = frozenset({"InternalError", "OperationTimedOut"})  # 500: retry
CODE_ERRORS: Mapping[str, type[ConnectorError]] = {
    "ContainerNotFound": ContainerNotFound,
    "ConditionNotMet": PreconditionFailed,
    "BlobAlreadyExists": PreconditionFailed,  # a write under If-None-Match: * lost the race
    **dict.fromkeys(DENIED_CODES, AccessDenied),
    **dict.fromkeys(THROTTLE_CODES, Throttled),
    **dict.fromkeys(TRANSIENT_CODES, TransientStorageError),
}


def _sdk_exceptions() -> Any:
    """azure.core.exceptions, or None while it is not imported: the SDK is imported on its
    first use only (`account`), and no instance of its classes exists before then."""
    return sys.modules.get("azure.core.exceptions")


def type_errors() -> tuple[tuple[type[BaseException], type[ConnectorError]], ...]:
    """azure-core's own classes, for errors that carry no status (a token credential
    failing)."""
    sdk = _sdk_exceptions()
    if sdk is None:
        return ()
    return (
        (sdk.ResourceNotFoundError, ObjectNotFound),
        (sdk.ClientAuthenticationError, AccessDenied),
        (sdk.ResourceModifiedError, PreconditionFailed),
    )


def network_errors() -> tuple[type[BaseException], ...]:
    """The SDK's network errors (once it is imported) and the data path's: reset, cut body,
    timeout."""
    sdk = _sdk_exceptions()
    found = (sdk.ServiceRequestError, sdk.ServiceResponseError) if sdk is not None else ()
    return (*found, *HTTP_NETWORK_ERRORS)


def sdk_errors() -> tuple[type[BaseException], ...]:
    """What the connector catches and maps around an SDK call: azure-core's exceptions
    (azure-storage-blob raises those), and the OS errors a socket raises (requests' own
    errors are OSErrors too). Anything else is a bug and propagates unchanged."""
    sdk = _sdk_exceptions()
    return (sdk.AzureError, OSError) if sdk is not None else (OSError,)


WORDING = ErrorWording("Azure", "container", "the connection string, key, SAS or role assignment")
# The data path's errors: its own failures, and the transport's.
DATA_ERRORS: tuple[type[BaseException], ...] = (HttpFailure, *HTTP_NETWORK_ERRORS, OSError)
MAX_CONNECTIONS = 64  # kept open by the data path: at least the concurrency of a run
READ_BUFFER_BYTES = 1024 * 1024  # reads of the data path: whole age chunks at a time


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code or ""))


def _map_error(exc: BaseException, url: str, key: str = "") -> ConnectorError:
    """The single place where azure-core / azure-storage-blob exceptions become bascule errors.

    Total, so `should_retry` may ask about anything: an exception that is not one of
    `sdk_errors()` comes back as a permanent ConnectorError (the methods never pass one)."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, HttpFailure):
        found = CODE_ERRORS.get(exc.code) or status_error(exc.status) or ConnectorError
        return WORDING.error(found, url, key, str(exc), retry_after_s=exc.retry_after_s)
    code = _error_code(exc)
    status = int(getattr(exc, "status_code", 0) or 0)
    detail = f"{code or status or type(exc).__name__}"
    cls = CODE_ERRORS.get(code) or status_error(status) or _class_by_type(exc)
    if cls is not None:
        return WORDING.error(cls, url, key, detail, retry_after_s=_retry_after(exc))
    if isinstance(exc, network_errors()):
        return WORDING.network_error(url, key, exc)
    return WORDING.error(ConnectorError, url, key, detail if status else f"{detail}: {exc}")


def _class_by_type(exc: BaseException) -> type[ConnectorError] | None:
    return next((cls for base, cls in type_errors() if isinstance(exc, base)), None)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except (TypeError, ValueError):
        return None


def _connection_fields(connection_string: str) -> dict[str, str]:
    """The ``Name=value`` fields of a connection string, by lowercase name."""
    fields = (part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return {name.strip().lower(): value.strip() for name, value in fields}


def _data_path_auth(connection_string: str | None, credential: Any, account: str) -> Auth | None:
    """How the data path authenticates, from what the SDK client was given: an account key
    (connection string or key credential), a SAS, or a token credential; None (anonymous,
    or a credential of another kind) leaves reads on the SDK."""
    if connection_string:
        fields = _connection_fields(connection_string)
        if fields.get("accountkey") and fields.get("accountname"):
            return SharedKey(fields["accountname"], fields["accountkey"])
        if fields.get("sharedaccesssignature"):
            return Sas(fields["sharedaccesssignature"])
        return None
    if credential is not None and hasattr(credential, "get_token"):
        return Bearer(credential)
    if isinstance(credential, str):
        return SharedKey(account, credential)
    return None


def _listed_info(blob: ListedBlob) -> ObjectInfo:
    return ObjectInfo(
        key=blob.name,
        size=blob.size,
        etag=blob.etag,
        last_modified=blob.last_modified,
        checksums={"content-md5": blob.content_md5} if blob.content_md5 else {},
        metadata=_metadata_from_azure(blob.metadata),
    )


def _metadata_to_azure(metadata: Mapping[str, str] | None) -> dict[str, str]:
    # Azure metadata names are C# identifiers: no '-'. bascule's names use '-' (safe on S3,
    # where proxies drop '_' in headers), so '-' is stored as '_' and read back as '-'.
    return {k.lower().replace("-", "_"): v for k, v in (metadata or {}).items()}


def _metadata_from_azure(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {k.lower().replace("_", "-"): v for k, v in (metadata or {}).items()}


def _strip(etag: str | None) -> str:
    return (etag or "").strip('"')


def _block_id(token: str, number: int) -> str:
    # Same length for every block of a blob (Azure requires it): 32 hex + ":" + 6 digits.
    return base64.b64encode(f"{token}:{number:06d}".encode()).decode()


def _parse_block_id(block_id: str) -> tuple[str, int] | None:
    try:
        token, number = base64.b64decode(block_id).decode().split(":")
        return (token, int(number)) if _TOKEN_RE.match(token) else None
    except ValueError:
        return None


def _token_hex(resume_token: str, url: str, key: str) -> str:
    token = resume_token.removeprefix(TOKEN_PREFIX)
    if not resume_token.startswith(TOKEN_PREFIX) or not _TOKEN_RE.match(token):
        raise ObjectNotFound(
            f"resume token for {url}/{key} is not an Azure upload token; start the object again",
            connector=url,
            key=key,
        )
    return token


class _Chunks(io.RawIOBase):
    """A download as a raw stream; errors during reads are mapped too."""

    def __init__(self, chunks: Iterator[bytes], url: str, key: str) -> None:
        self._chunks = chunks
        self._pending = b""
        self._url = url
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            try:
                self._pending = next(self._chunks, b"")
            except sdk_errors() as exc:
                raise _map_error(exc, self._url, self._key) from exc
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class AzureBlobConnector:
    """One Azure Blob container. Give a connection string, or an account URL and a credential
    (a key, SAS or token credential; None means anonymous).

    `list_pages_fetched` counts List Blobs requests made."""

    def __init__(
        self,
        container: str,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        sdk_retry_total: int = 0,
        list_page_size: int = DEFAULT_LIST_PAGE_SIZE,
        ca_bundle: str | None = None,
    ) -> None:
        # Ranged reads stream in 4 MiB pieces: by default the SDK buffers the first 32 MiB of
        # every download in one piece, which a part read would hold entirely in memory.
        options: dict[str, Any] = {
            "retry_total": sdk_retry_total,
            "max_single_get_size": 4 * 1024 * 1024,
            "max_chunk_get_size": 4 * 1024 * 1024,
        }
        if ca_bundle:  # a PEM file of the CAs to trust; unset: the system's store
            options["connection_verify"] = ca_bundle
        if not connection_string and not account_url:
            raise ConfigError("Azure Blob endpoint needs a connection string or an account URL")
        self._service_args = (connection_string, account_url, credential, options)
        self._container_name = container
        self._sdk_container: ContainerClient | None = None
        self._sdk_lock = threading.Lock()
        if connection_string:
            # Read by the SDK's rules without importing it (`account`); ValueError as the SDK.
            place = account.from_connection_string(connection_string)
            name, api_version = place.name, account.API_VERSION
            self._endpoint_url, container_url = place.service_url, place.container_url(container)
        else:  # the SDK checks a credential (a token needs HTTPS): built now
            service = self._service()
            self._sdk_container = service.get_container_client(container)
            name, api_version = service.account_name, service.api_version
            self._endpoint_url = str(service.url)
            container_url = str(self._sdk_container.url).split("?", 1)[0]
        self._url = f"az://{name}/{container}"
        self.list_page_size = list_page_size
        self.list_pages_fetched = 0
        auth = _data_path_auth(connection_string, credential, str(name))
        settings = PoolSettings(ca_bundle, max_connections=MAX_CONNECTIONS)
        self._rest = BlobRest(container_url, auth, str(api_version), settings) if auth else None

    @property
    def _container(self) -> ContainerClient:
        """The SDK's client, made on first use: listing and reading go over the data path
        (`rest.py`) without it; writes, stats and the other calls use it."""
        found = self._sdk_container
        if found is None:
            with self._sdk_lock:
                if self._sdk_container is None:
                    self._sdk_container = self._service().get_container_client(self._container_name)
                found = self._sdk_container
        return found

    def _service(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        connection_string, account_url, credential, options = self._service_args
        if connection_string:
            return BlobServiceClient.from_connection_string(connection_string, **options)
        return BlobServiceClient(str(account_url), credential=credential, **options)

    @property
    def url(self) -> str:
        return self._url

    @property
    def endpoint_url(self) -> str:
        """The account endpoint the client sends requests to, as the SDK parsed it."""
        return self._endpoint_url

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            resumable_parts=True,
            if_match_read=True,
            server_side_checksums=True,
            sorted_listing=True,  # blobs are listed in lexicographic (UTF-8 byte) order
            max_part_size=4000 * MiB,
            max_parts=50_000,
            max_object_size=190 * 1024 * GiB,
            max_key_bytes=4 * MAX_BLOB_NAME_CHARS,  # the limit is in characters: key_problem
            part_rewrite=True,  # Put Block with the same id replaces the staged block
            # No range copy: Put Block From URL needs a source URL the service can read
            # (a SAS), and Azurite does not implement it, so it could not be tested here.
            range_copy=False,
        )

    def _do(self, key: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except sdk_errors() as exc:
            raise _map_error(exc, self.url, key) from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if self._rest is not None:  # the first page is read now: a missing container raises
            return self._rest_pages(self._rest, prefix, self._rest_page(self._rest, prefix, ""))
        pages = self._container.list_blobs(
            name_starts_with=prefix or None,
            include=["metadata"],
            results_per_page=self.list_page_size,
        ).by_page()
        # The first page is fetched now, so a missing container raises here.
        first = self._next_page(pages)
        return self._walk(pages, first)

    def _next_page(
        self, pages: Iterator[Iterator[BlobProperties]]
    ) -> builtins.list[ObjectInfo] | None:
        self.list_pages_fetched += 1
        page = self._do("", next, pages, None)
        if page is None:
            return None
        return [self._info(blob) for blob in self._do("", builtins.list, page)]

    def _walk(
        self, pages: Iterator[Iterator[BlobProperties]], page: builtins.list[ObjectInfo] | None
    ) -> Iterator[ObjectInfo]:
        while page is not None:
            yield from page
            page = self._next_page(pages)

    def _rest_page(
        self, rest: BlobRest, prefix: str, marker: str
    ) -> tuple[builtins.list[ObjectInfo], str]:
        self.list_pages_fetched += 1
        try:
            blobs, marker = rest.list_page(prefix, marker, self.list_page_size)
        except DATA_ERRORS as exc:
            raise _map_error(exc, self.url) from exc
        return [_listed_info(b) for b in blobs], marker

    def _rest_pages(
        self, rest: BlobRest, prefix: str, page: tuple[builtins.list[ObjectInfo], str]
    ) -> Iterator[ObjectInfo]:
        while True:
            objects, marker = page
            yield from objects
            if not marker:
                return
            page = self._rest_page(rest, prefix, marker)

    @staticmethod
    def _info(blob: BlobProperties) -> ObjectInfo:
        md5 = blob.content_settings.content_md5 if blob.content_settings else None
        return ObjectInfo(
            key=blob.name,
            size=int(blob.size or 0),
            etag=_strip(blob.etag),
            last_modified=blob.last_modified,
            checksums={"content-md5": base64.b64encode(bytes(md5)).decode()} if md5 else {},
            metadata=_metadata_from_azure(blob.metadata),
        )

    def stat(self, key: str) -> ObjectInfo:
        blob = self._container.get_blob_client(key)
        return self._info(self._do(key, blob.get_blob_properties))

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        """Sends If-Match (Azure honours it) and checks the returned ETag as well."""
        if byte_range is not None and byte_range.length == 0:
            self._check_etag(key, self.stat(key).etag, if_match)
            return io.BytesIO(b"")
        if self._rest is not None:
            return self._read(self._rest, key, byte_range, if_match)
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        kwargs: dict[str, Any] = {}
        if if_match is not None:
            kwargs = {"etag": f'"{if_match}"', "match_condition": MatchConditions.IfNotModified}
        if byte_range is not None:
            kwargs.update(offset=byte_range.start, length=byte_range.length)
        blob = self._container.get_blob_client(key)
        try:
            downloader = blob.download_blob(**kwargs)
        except HttpResponseError as exc:
            if _error_code(exc) != "InvalidRange":
                raise _map_error(exc, self.url, key) from exc
            # A range starting past the end: clipped to nothing, as the contract says.
            self._check_etag(key, self.stat(key).etag, if_match)
            return io.BytesIO(b"")
        except sdk_errors() as exc:
            raise _map_error(exc, self.url, key) from exc
        self._check_etag(key, _strip(downloader.properties.etag), if_match)
        return io.BufferedReader(_Chunks(iter(downloader.chunks()), self.url, key))

    def _read(
        self, rest: BlobRest, key: str, byte_range: ByteRange | None, if_match: str | None
    ) -> BinaryIO:
        """`open_read` on the data path (one Get Blob, its body streamed)."""
        start = byte_range.start if byte_range is not None else None
        length = byte_range.length if byte_range is not None else None
        try:
            response = rest.get(key, start, length, if_match or "")
        except DATA_ERRORS as exc:
            if isinstance(exc, HttpFailure) and exc.code == "InvalidRange":
                # A range starting past the end: clipped to nothing, as the contract says.
                self._check_etag(key, self.stat(key).etag, if_match)
                return io.BytesIO(b"")
            raise _map_error(exc, self.url, key) from exc
        headers, raw = response
        try:
            self._check_etag(key, _strip(headers.get("etag")), if_match)
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
        """`PushReader`: `open_read`'s request and checks, the body handed to `sink` (through
        the SDK's stream when the data path is off)."""
        if self._rest is None or byte_range.length == 0:
            with self.open_read(key, byte_range, if_match) as stream:
                while piece := stream.read(READ_BUFFER_BYTES):
                    sink(piece)
            return
        rest = self._rest

        def accept(headers: Mapping[str, str]) -> None:
            self._check_etag(key, _strip(headers.get("etag")), if_match)

        try:
            rest.get_to(key, byte_range.start, byte_range.length, if_match or "", sink, accept)
        except DATA_ERRORS as exc:
            if not (isinstance(exc, HttpFailure) and exc.code == "InvalidRange"):
                raise _map_error(exc, self.url, key) from exc
            self._check_etag(key, self.stat(key).etag, if_match)  # past the end: nothing

    def _check_etag(self, key: str, etag: str, if_match: str | None) -> None:
        if if_match is not None and etag != if_match:
            raise PreconditionFailed(
                f"{self.url}/{key} changed: etag {etag}, expected {if_match}; re-plan the object",
                connector=self.url,
                key=key,
            )

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        """One Put Blob with its Content-MD5 stored (read into memory: for small objects)."""
        from azure.storage.blob import ContentSettings

        payload = data.read(size)
        md5 = hashlib.md5(payload, usedforsecurity=False).digest()
        blob = self._container.get_blob_client(key)
        self._do(
            key,
            blob.upload_blob,
            payload,
            length=len(payload),
            overwrite=True,
            metadata=_metadata_to_azure(metadata),
            content_settings=ContentSettings(content_md5=bytearray(md5)),
        )
        return self.stat(key)

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):  # a missing key is not an error
            self._do(key, self._container.get_blob_client(key).delete_blob)

    def should_retry(self, exc: BaseException) -> bool:
        """ServerBusy/503, 429, InternalError/500 and network errors; never other 4xx."""
        return _map_error(exc, self.url).retryable

    def key_problem(self, key: str) -> str | None:
        """Azure's blob-name rules: 1 to 1,024 characters, no control character, at most
        254 path segments, and no trailing "." or "/" (the service drops them, so the blob
        would get another name); plus `object_key_problem`'s shared rules."""
        problem = object_key_problem(key, self.capabilities.max_key_bytes)
        if problem is not None:
            return problem
        if len(key) > MAX_BLOB_NAME_CHARS:
            return (
                f"the name is {len(key)} characters, above Azure's {MAX_BLOB_NAME_CHARS}; "
                "shorten the prefix or rename the object"
            )
        if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key):
            return "the name holds a control character, which Azure refuses; rename it"
        if key.count("/") + 1 > MAX_BLOB_SEGMENTS:
            return f"the name has more than {MAX_BLOB_SEGMENTS} path segments; rename it"
        if key.endswith((".", "/")):
            return "the name ends with '.' or '/', which Azure drops; rename it"
        return None

    # --- PartWriterOpener ----------------------------------------------------------------

    def open_writer(
        self,
        key: str,
        metadata: Mapping[str, str] | None = None,
        resume_token: str | None = None,
        *,
        check: bool = True,
    ) -> AzurePartWriter:
        """Start staging blocks, or reattach by token (ObjectNotFound if none is staged).

        Metadata is applied at commit: pass it again when resuming."""
        if resume_token is None:
            self._do(key, self._container.get_container_properties)  # ContainerNotFound early
            return AzurePartWriter(self, key, uuid.uuid4().hex, metadata)
        writer = AzurePartWriter(self, key, _token_hex(resume_token, self.url, key), metadata)
        if check and not writer.list_parts():
            raise ObjectNotFound(
                f"no staged blocks of {self.url}/{key} for this resume token; start again",
                connector=self.url,
                key=key,
            )
        return writer

    def _uncommitted(self, key: str) -> builtins.list[tuple[str, int, int]]:
        """(token, part number, size) of each staged block of `key` that we named."""
        blob = self._container.get_blob_client(key)
        try:
            _, staged = self._do(key, blob.get_block_list, "uncommitted")
        except ObjectNotFound:
            return []
        found = []
        for block in staged:
            parsed = _parse_block_id(block.id)
            if parsed:
                found.append((parsed[0], parsed[1], int(block.size)))
        return found

    def list_uploads(self, prefix: str = "") -> Iterator[PendingUpload]:
        """Blobs that hold only staged blocks (never committed), one entry per token.

        Found by comparing a listing that includes uncommitted blobs with a normal one; blocks
        staged on an already committed blob are not listed (abort them by token)."""
        committed = (o.key for o in self.list(prefix))
        everything = self._container.list_blobs(
            name_starts_with=prefix or None, include=["uncommittedblobs"]
        )
        next_committed = next(committed, None)
        for blob in self._do("", builtins.list, everything):
            while next_committed is not None and next_committed < blob.name:
                next_committed = next(committed, None)
            if blob.name == next_committed:
                continue
            tokens = sorted({token for token, _, _ in self._uncommitted(blob.name)})
            for token in tokens or ["0" * 32]:  # blocks named by another tool
                yield PendingUpload(blob.name, TOKEN_PREFIX + token)

    def abort_upload(self, key: str, resume_token: str) -> None:
        """See the module docstring; an upload already gone is not an error. Nothing is
        done unless a block of this very token is staged: another writer's staged blocks
        are never discarded on our behalf."""
        token = _token_hex(resume_token, self.url, key)
        if not any(t == token for t, _, _ in self._uncommitted(key)):
            return
        blob = self._container.get_blob_client(key)
        try:
            props = self._do(key, blob.get_blob_properties)
        except ObjectNotFound:
            self._drop_uncommitted_blob(key)
            return
        committed, staged = self._do(key, blob.get_block_list, "all")
        if staged and committed:
            from azure.core import MatchConditions
            from azure.storage.blob import BlobBlock

            self._do(
                key,
                blob.commit_block_list,
                [BlobBlock(block_id=b.id) for b in committed],
                metadata=props.metadata,
                content_settings=props.content_settings,
                etag=props.etag,
                match_condition=MatchConditions.IfNotModified,
            )

    def _drop_uncommitted_blob(self, key: str) -> None:
        blob = self._container.get_blob_client(key)
        if not self._uncommitted(key) and not self._has_blob_entry(key):
            return
        try:
            self._do(key, blob.delete_blob)
        except ObjectNotFound:
            # Where Delete Blob does not see a blob without committed content.
            self._discard_by_empty_commit(key)

    def _discard_by_empty_commit(self, key: str) -> None:
        """Commit an empty block list if the blob is still missing (discarding every staged
        block), then delete that empty blob unless someone rewrote it meanwhile."""
        from azure.core import MatchConditions

        blob = self._container.get_blob_client(key)
        created = self._do(
            key, blob.commit_block_list, [], match_condition=MatchConditions.IfMissing
        )
        self._do(
            key,
            blob.delete_blob,
            etag=created["etag"],
            match_condition=MatchConditions.IfNotModified,
        )

    def _has_blob_entry(self, key: str) -> bool:
        listing = self._container.list_blobs(name_starts_with=key, include=["uncommittedblobs"])
        return any(b.name == key for b in self._do(key, builtins.list, listing))


class AzurePartWriter:
    """Staged blocks of one blob; see `PartWriter`. Block ids stay inside this module."""

    def __init__(
        self,
        owner: AzureBlobConnector,
        key: str,
        token: str,
        metadata: Mapping[str, str] | None,
    ) -> None:
        self._owner = owner
        self._key = key
        self._token = token
        self._metadata = _metadata_to_azure(metadata)
        self._blob = owner._container.get_blob_client(key)

    @property
    def resume_token(self) -> str:
        return TOKEN_PREFIX + self._token

    def write_part(
        self, number: int, data: PartBytes, *, sha256: bytes | None = None
    ) -> PartReceipt:
        """Put Block with a transactional MD5 the service checks; a rewrite replaces it.
        Azure reports no per-block checksum, so receipts carry no etag."""
        if not 1 <= number <= 999_999:
            raise ValueError(f"part numbers run from 1 to 999999, got {number}")
        self._owner._do(
            self._key,
            self._blob.stage_block,
            _block_id(self._token, number),
            bytes(data),  # the SDK's body: bytes, not a view of the caller's buffer
            length=len(data),
            validate_content=True,
        )
        return PartReceipt(number, len(data))

    def list_parts(self) -> builtins.list[PartReceipt]:
        parts = {
            number: PartReceipt(number, size)
            for token, number, size in self._owner._uncommitted(self._key)
            if token == self._token
        }
        return [parts[n] for n in sorted(parts)]

    def commit(self, parts: Sequence[PartReceipt]) -> ObjectInfo:
        """Put Block List; ConnectorError (InvalidBlockList) if a block is not staged."""
        from azure.storage.blob import BlobBlock

        blocks = [BlobBlock(block_id=_block_id(self._token, r.number)) for r in parts]
        self._owner._do(self._key, self._blob.commit_block_list, blocks, metadata=self._metadata)
        return self._owner.stat(self._key)

    def abort(self) -> None:
        self._owner.abort_upload(self._key, self.resume_token)


if TYPE_CHECKING:
    from bascule.connectors.base import Connector, PartWriter, PartWriterOpener

    def _typecheck(connector: AzureBlobConnector, writer: AzurePartWriter) -> None:
        _c: Connector = connector
        _o: PartWriterOpener = connector
        _w: PartWriter = writer

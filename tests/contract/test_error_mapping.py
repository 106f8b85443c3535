"""No SDK exception type leaks out of a connector, and each maps to the right class.

Two halves:
- against the real servers (every backend of the contract suite): drive each connector into
  each failure it can meet and check that only the expected bascule class comes out;
- a table per connector module for its `_map_error`, including failures the servers cannot
  be made to produce on demand (throttling with Retry-After, 5xx, resets).
"""

from __future__ import annotations

import errno
import io
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
import urllib3.exceptions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from bascule.connectors import local, rclone
from bascule.connectors.azure import connector as azure_blob
from bascule.connectors.azure.connector import AzureBlobConnector
from bascule.connectors.base import Connector, PartReceipt, PartWriterOpener
from bascule.connectors.rclone import RcloneConnector, s3_remote_env
from bascule.connectors.s3 import errors as s3
from bascule.connectors.s3.connector import S3Connector
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
from bascule.sandbox import servers
from tests.conftest import Backend

URL = "test://container"


def raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an error, none was raised")


def assert_mapped(exc: BaseException, expected: type[ConnectorError]) -> None:
    # exact class: a generic ConnectorError where AccessDenied is due is a failure
    assert type(exc) is expected, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"


def consume(connector: Connector, key: str, **kwargs: Any) -> bytes:
    with connector.open_read(key, **kwargs) as stream:
        return stream.read()


# --- against the real servers --------------------------------------------------------------


def test_every_failure_maps_to_its_class(backend: Backend) -> None:
    connector = backend.make()
    connector.put("present.bin", io.BytesIO(b"v1"), 2)
    stale = connector.stat("present.bin").etag
    connector.put("present.bin", io.BytesIO(b"v2!"), 3)
    cases: list[tuple[Callable[[], object], type[ConnectorError]]] = [
        (lambda: connector.stat("absent.bin"), ObjectNotFound),
        (lambda: consume(connector, "absent.bin"), ObjectNotFound),
        (lambda: consume(connector, "present.bin", if_match=stale), PreconditionFailed),
    ]
    if isinstance(connector, PartWriterOpener) and connector.capabilities.resumable_parts:
        opener = connector
        writer = opener.open_writer("parts.bin")
        one = writer.write_part(1, b"x")
        cases += [
            (lambda: opener.open_writer("parts.bin", resume_token="bogus"), ObjectNotFound),
            (lambda: writer.commit([one, PartReceipt(2, 1, "zz")]), ConnectorError),
        ]
    missing = backend.make_missing_container()
    cases += [
        (lambda: list(missing.list()), ContainerNotFound),
        (lambda: missing.stat("a.bin"), ContainerNotFound),
        (lambda: missing.put("a.bin", io.BytesIO(b"a"), 1), ContainerNotFound),
    ]
    for action, expected in cases:
        assert_mapped(raised(action), expected)


def test_wrong_credentials_on_every_operation(backend: Backend) -> None:
    if backend.make_bad_credentials is None:
        pytest.skip(f"{backend.name}: no credentials to get wrong")
    good = backend.make()
    good.put("present.bin", io.BytesIO(b"v1"), 2)
    bad = backend.make_bad_credentials()
    actions: list[Callable[[], object]] = [
        lambda: list(bad.list()),
        lambda: bad.stat("present.bin"),
        lambda: consume(bad, "present.bin"),
        lambda: bad.put("new.bin", io.BytesIO(b"n"), 1),
        lambda: bad.delete("present.bin"),
    ]
    if isinstance(bad, PartWriterOpener):
        opener = bad
        actions += [lambda: opener.open_writer("p.bin"), lambda: list(opener.list_uploads())]
    with backend.checking_credentials():
        for action in actions:
            exc = raised(action)
            assert_mapped(exc, AccessDenied)
            assert not bad.should_retry(exc)


def unreachable_connectors() -> dict[str, Callable[[], Connector]]:
    port = servers.free_port()  # nothing listens there
    endpoint = f"http://{servers.HOST}:{port}"
    return {
        "s3": lambda: S3Connector(
            "bucket",
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="a" * 20,
            secret_access_key="b" * 40,
            provider="other",
            connect_timeout_s=2,
        ),
        "azure_blob": lambda: AzureBlobConnector(
            "container", connection_string=servers.azurite_connection_string(port)
        ),
        "rclone": lambda: RcloneConnector(
            "dead:bucket",
            env=s3_remote_env(
                "dead",
                endpoint_url=endpoint,
                region="us-east-1",
                access_key_id="a" * 20,
                secret_access_key="b" * 40,
            ),
        ),
    }


@pytest.mark.parametrize("name", ["s3", "azure_blob", "rclone"])
def test_an_unreachable_endpoint_is_transient(name: str) -> None:
    connector = unreachable_connectors()[name]()
    exc = raised(lambda: connector.stat("a.bin"))
    assert isinstance(exc, TransientStorageError), f"{type(exc).__name__}: {exc}"
    assert connector.should_retry(exc)


# --- S3 table ------------------------------------------------------------------------------


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> Exception:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    error: Exception = botocore.exceptions.ClientError(response, "GetObject")
    return error


S3_TABLE: list[tuple[BaseException, type[ConnectorError]]] = [
    (client_error("NoSuchBucket", 404), ContainerNotFound),
    (client_error("NoSuchKey", 404), ObjectNotFound),
    (client_error("404", 404), ObjectNotFound),
    (client_error("NoSuchUpload", 404), ObjectNotFound),
    (client_error("AccessDenied", 403), AccessDenied),
    (client_error("InvalidAccessKeyId", 403), AccessDenied),
    (client_error("SignatureDoesNotMatch", 403), AccessDenied),
    (client_error("PreconditionFailed", 412), PreconditionFailed),
    (client_error("SlowDown", 503), Throttled),
    (client_error("TooManyRequests", 429), Throttled),
    (client_error("ServiceUnavailable", 503), Throttled),
    (client_error("InternalError", 500), TransientStorageError),
    (client_error("BadGateway", 502), TransientStorageError),
    (client_error("RequestTimeout", 400), TransientStorageError),
    (client_error("NotImplemented", 501), UnsupportedOperation),
    (client_error("InvalidPart", 400), ConnectorError),
    (client_error("EntityTooSmall", 400), ConnectorError),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), TransientStorageError),
    (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), TransientStorageError),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), TransientStorageError),
    (
        botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"),
        TransientStorageError,
    ),
    (botocore.exceptions.ResponseStreamingError(error="cut"), TransientStorageError),
    (urllib3.exceptions.ProtocolError("reset"), TransientStorageError),
    (ConnectionResetError(errno.ECONNRESET, "reset"), TransientStorageError),
    (botocore.exceptions.NoCredentialsError(), AccessDenied),
    (botocore.exceptions.ParamValidationError(report="bad"), ConnectorError),
    (RuntimeError("anything else"), ConnectorError),
]


@pytest.mark.parametrize(("exc", "expected"), S3_TABLE, ids=lambda v: type(v).__name__)
def test_s3_map_error_table(exc: BaseException, expected: type[ConnectorError]) -> None:
    mapped = s3.map_error(exc, URL, "k")
    assert_mapped(mapped, expected)
    assert mapped.retryable == issubclass(expected, TransientStorageError)


def test_s3_throttling_carries_retry_after() -> None:
    mapped = s3.map_error(client_error("SlowDown", 503, {"retry-after": "7"}), URL)
    assert isinstance(mapped, Throttled)
    assert mapped.retry_after_s == 7.0
    no_hint = s3.map_error(client_error("SlowDown", 503), URL)
    assert isinstance(no_hint, Throttled)
    assert no_hint.retry_after_s is None


# --- Azure table ---------------------------------------------------------------------------


class FakeResponse:
    """The few attributes azure-core reads from an HTTP response to build its errors."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.reason = "reason"
        self.headers = headers or {}
        self.request = None

    def text(self, encoding: str | None = None) -> str:
        return ""

    def body(self) -> bytes:
        return b""


def azure_error(
    cls: type[HttpResponseError], status: int, code: str, headers: dict[str, str] | None = None
) -> HttpResponseError:
    exc = cls(message=code, response=FakeResponse(status, headers))
    # azure-storage-blob sets this from the x-ms-error-code header
    exc.error_code = code  # type: ignore[attr-defined]
    return exc


AZURE_TABLE: list[tuple[BaseException, type[ConnectorError]]] = [
    (azure_error(ResourceNotFoundError, 404, "ContainerNotFound"), ContainerNotFound),
    (azure_error(ResourceNotFoundError, 404, "BlobNotFound"), ObjectNotFound),
    (azure_error(ClientAuthenticationError, 403, "AuthenticationFailed"), AccessDenied),
    (azure_error(HttpResponseError, 403, "AuthorizationFailure"), AccessDenied),
    (azure_error(HttpResponseError, 403, "AuthorizationPermissionMismatch"), AccessDenied),
    (azure_error(ResourceModifiedError, 412, "ConditionNotMet"), PreconditionFailed),
    (azure_error(HttpResponseError, 409, "BlobAlreadyExists"), PreconditionFailed),
    (azure_error(HttpResponseError, 503, "ServerBusy"), Throttled),
    (azure_error(HttpResponseError, 429, "TooManyRequests"), Throttled),
    (azure_error(HttpResponseError, 500, "InternalError"), TransientStorageError),
    (azure_error(HttpResponseError, 500, "OperationTimedOut"), TransientStorageError),
    (azure_error(HttpResponseError, 400, "InvalidBlockList"), ConnectorError),
    (azure_error(HttpResponseError, 400, "InvalidMetadata"), ConnectorError),
    (ServiceRequestError("connection refused"), TransientStorageError),
    (ServiceResponseError("connection reset"), TransientStorageError),
    (RuntimeError("anything else"), ConnectorError),
]


@pytest.mark.parametrize(("exc", "expected"), AZURE_TABLE, ids=lambda v: type(v).__name__)
def test_azure_map_error_table(exc: BaseException, expected: type[ConnectorError]) -> None:
    mapped = azure_blob._map_error(exc, URL, "k")
    assert_mapped(mapped, expected)
    assert mapped.retryable == issubclass(expected, TransientStorageError)


def test_azure_server_busy_carries_retry_after() -> None:
    exc = azure_error(HttpResponseError, 503, "ServerBusy", {"Retry-After": "12"})
    mapped = azure_blob._map_error(exc, URL)
    assert isinstance(mapped, Throttled)
    assert mapped.retry_after_s == 12.0


# --- rclone table (exit code + the stderr rclone prints) -----------------------------------

RCLONE_TABLE: list[tuple[int, str, type[ConnectorError]]] = [
    (3, "NOTICE: Failed to lsjson: error in ListJSON: directory not found", ContainerNotFound),
    (1, "api error NoSuchBucket: The specified bucket does not exist", ContainerNotFound),
    (4, "sb:bkt/nope is a directory or doesn't exist: object not found", ObjectNotFound),
    (1, "StatusCode: 403, api error SignatureDoesNotMatch: The request signature", AccessDenied),
    (1, "api error InvalidAccessKeyId: unknown key", AccessDenied),
    (1, "StatusCode: 503, api error SlowDown: Please reduce your request rate", Throttled),
    (1, "StatusCode: 429, too many requests", Throttled),
    (5, "temporary error", TransientStorageError),
    (1, "StatusCode: 500, api error InternalError", TransientStorageError),
    (1, "read tcp 127.0.0.1: connection reset by peer", TransientStorageError),
    (1, "dial tcp 127.0.0.1:9: connect: connection refused", TransientStorageError),
    (2, "Failed to rcat: some other failure", ConnectorError),
]


@pytest.mark.parametrize(("code", "stderr", "expected"), RCLONE_TABLE)
def test_rclone_map_error_table(code: int, stderr: str, expected: type[ConnectorError]) -> None:
    mapped = rclone._map_error(None, URL, "k", returncode=code, stderr=stderr)
    assert_mapped(mapped, expected)
    assert mapped.retryable == issubclass(expected, TransientStorageError)


def test_rclone_missing_binary_and_timeout() -> None:
    import subprocess

    assert_mapped(rclone._map_error(FileNotFoundError(2, "rclone"), URL), ConnectorError)
    timeout = subprocess.TimeoutExpired(["rclone"], 1.0)
    assert_mapped(rclone._map_error(timeout, URL), TransientStorageError)


# --- local table ---------------------------------------------------------------------------

LOCAL_TABLE: list[tuple[OSError, type[ConnectorError]]] = [
    (FileNotFoundError(errno.ENOENT, "no such file"), ObjectNotFound),
    (NotADirectoryError(errno.ENOTDIR, "not a directory"), ObjectNotFound),
    (PermissionError(errno.EACCES, "permission denied"), AccessDenied),
    (OSError(errno.EAGAIN, "try again"), TransientStorageError),
    (OSError(errno.EBUSY, "busy"), TransientStorageError),
    (OSError(errno.ENOSPC, "no space left"), ConnectorError),
]


@pytest.mark.parametrize(("exc", "expected"), LOCAL_TABLE, ids=lambda v: type(v).__name__)
def test_local_map_error_table(exc: OSError, expected: type[ConnectorError]) -> None:
    mapped = local._map_error(exc, URL, "k")
    assert_mapped(mapped, expected)
    assert mapped.retryable == issubclass(expected, TransientStorageError)

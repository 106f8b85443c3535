"""How S3 failures become bascule errors: one mapping for the requests bascule sends itself
(`HttpFailure`, the transport's `NetworkError`) and for boto3's exceptions where the SDK is
loaded (it resolves credentials and endpoints bascule cannot resolve alone).

The S3 error code of an answer is read before its HTTP status
(https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from bascule.connectors.base import ErrorWording, status_error
from bascule.connectors.http import NETWORK_ERRORS as HTTP_NETWORK_ERRORS
from bascule.connectors.http import HttpFailure
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

# S3 error codes, by the bascule class they map to.
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


def _botocore() -> Any:
    """botocore's exceptions module once something imported it (the SDK is only loaded
    where bascule cannot resolve an endpoint's URL or credentials alone), else None."""
    return sys.modules.get("botocore.exceptions")


def network_errors() -> tuple[type[BaseException], ...]:
    """The transport's errors (refused, reset, cut, timed out), botocore's and urllib3's
    too once they are loaded."""
    found: tuple[type[BaseException], ...] = (*HTTP_NETWORK_ERRORS, ConnectionError, TimeoutError)
    sdk = _botocore()
    if sdk is not None:
        found += (
            sdk.ConnectionError,  # refused, reset, closed, timeouts
            sdk.HTTPClientError,
            sdk.ResponseStreamingError,  # connection cut mid-body
            sdk.IncompleteReadError,  # body shorter than its Content-Length
        )
    urllib3 = sys.modules.get("urllib3.exceptions")
    return (*found, urllib3.HTTPError) if urllib3 is not None else found


def mapped_errors() -> tuple[type[BaseException], ...]:
    """What the connector catches and maps: the requests' failures (`HttpFailure`), the OS
    errors a socket raises, the SDK's exceptions once it is loaded. Anything else is a bug
    and propagates unchanged."""
    sdk = _botocore()
    found: tuple[type[BaseException], ...] = (HttpFailure, OSError)
    if sdk is not None:
        found += (sdk.BotoCoreError, sdk.ClientError)
    urllib3 = sys.modules.get("urllib3.exceptions")
    return (*found, urllib3.HTTPError) if urllib3 is not None else found


WORDING = ErrorWording("S3", "bucket", "the access key, secret and policy")


def map_error(exc: BaseException, url: str, key: str = "") -> ConnectorError:
    """The single place where a request's failure (`HttpFailure`, a transport error) or the
    SDK's exceptions become bascule errors.

    Total, so `should_retry` may ask about anything: an exception that is none of
    `mapped_errors` comes back as a permanent ConnectorError (the methods never pass one)."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, HttpFailure):
        cls = CODE_ERRORS.get(exc.code) or status_error(exc.status) or ConnectorError
        return WORDING.error(cls, url, key, str(exc), retry_after_s=exc.retry_after_s)
    sdk = _botocore()
    if sdk is not None and isinstance(exc, sdk.ClientError):
        return _map_client_error(exc, url, key)
    if sdk is not None and isinstance(exc, sdk.NoCredentialsError | sdk.PartialCredentialsError):
        return WORDING.error(AccessDenied, url, key, "no usable credentials")
    if isinstance(exc, network_errors()):
        return WORDING.network_error(url, key, exc)
    return WORDING.error(ConnectorError, url, key, str(exc) or type(exc).__name__)


def _map_client_error(exc: Any, url: str, key: str) -> ConnectorError:
    """A botocore ClientError (the SDK's answer to a reply that is not 2xx)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode", 0) or 0)
    detail = f"{code or status}: {error.get('Message', '')}".strip()
    cls = CODE_ERRORS.get(code) or status_error(status) or ConnectorError
    retry_after = retry_after_seconds(meta.get("HTTPHeaders", {}).get("retry-after"))
    return WORDING.error(cls, url, key, detail, retry_after_s=retry_after)


SHA256_REFUSED_HINT = (
    "this endpoint's writes carry x-amz-checksum-sha256 (part_checksum: sha256); if the "
    "service refuses that header, set part_checksum: content-md5 on the endpoint (the next "
    "run sends the objects of its unfinished uploads again, under Content-MD5)"
)


@contextlib.contextmanager
def sha256_refusal_hint(applies: bool) -> Iterator[None]:
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


def retry_after_seconds(value: object) -> float | None:
    try:
        return max(0.0, float(str(value)))
    except ValueError:
        return None  # absent, or an HTTP date (S3-compatible servers send seconds)

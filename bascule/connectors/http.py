"""The data path's HTTP client, shared by the S3 and Azure connectors: urllib3, no SDK.

Why: a request through boto3 costs about 2 ms of CPU and one through azure-storage-blob
about 2.6 ms (32 KiB objects over HTTPS, one thread), against 0.55 ms through urllib3 with
botocore's SigV4 signer; for small objects that is most of the copy's cost. So the requests
that carry object data (read an object or a range of it, write an object or a part) go
through a connection pool of their own; the SDKs keep the rest (listings, opening and
committing uploads), whose cost is per object at most, not per byte.

Contract: `HttpFailure` is raised for any answer that is not 2xx, with the status, the
provider's error code (when its body or headers give one), its message and Retry-After;
the connector maps it, with `NETWORK_ERRORS` (no answer: refused, reset, timed out), in its
single error-mapping function. No retry happens here (urllib3's are off): the one retry
policy (`bascule.migration.retry`) decides.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
import urllib3.exceptions

# A request that got no complete answer: worth retrying (a certificate failure excepted,
# see `ErrorWording.network_error`).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,  # ProtocolError (reset, cut body), timeouts, SSLError
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class HttpFailure(Exception):
    """An answer that is not 2xx."""

    status: int
    code: str = ""  # the provider's error code (S3 <Code>, Azure x-ms-error-code)
    message: str = ""
    retry_after_s: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code or self.status}: {self.message}".strip(": ")


@dataclass(frozen=True)
class PoolSettings:
    """How the data path connects: TLS trust, timeouts and pool size."""

    ca_bundle: str | None = None  # PEM of the CAs to trust; None: certifi's bundle, as boto3
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_connections: int = 16  # kept open per host: at least the run's concurrency


def make_pool(base_url: str, settings: PoolSettings) -> urllib3.HTTPConnectionPool:
    """A thread-safe pool of connections to the host of `base_url`, retries off."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    timeout = urllib3.Timeout(connect=settings.connect_timeout_s, read=settings.read_timeout_s)
    common: dict[str, Any] = {
        "maxsize": settings.max_connections,
        "block": False,
        "retries": False,
        "timeout": timeout,
    }
    if parts.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            host,
            parts.port or 443,
            ca_certs=settings.ca_bundle or _default_ca_bundle(),
            cert_reqs="CERT_REQUIRED",
            **common,
        )
    return urllib3.HTTPConnectionPool(host, parts.port or 80, **common)


def _default_ca_bundle() -> str | None:
    """The CA bundle boto3 would trust (certifi's), so both paths trust the same CAs."""
    from botocore.httpsession import get_cert_path

    path = get_cert_path(True)
    return path if isinstance(path, str) else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (HTTP dates are not sent by object stores: ignored)."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class ResponseStream(io.RawIOBase):
    """A streamed response body as a raw stream; errors during reads go through `mapper`.

    `readinto` reads straight into the caller's buffer (no intermediate copy)."""

    def __init__(
        self, response: urllib3.BaseHTTPResponse, mapper: Callable[[BaseException], Exception]
    ) -> None:
        self._response = response
        self._mapper = mapper

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._response.readinto(buffer))
        except NETWORK_ERRORS as exc:
            raise self._mapper(exc) from exc

    def close(self) -> None:
        if not self.closed:
            # A body not read to its end cannot go back to the pool.
            self._response.drain_conn() if self._fully_read() else self._response.close()
            self._response.release_conn()
        super().close()

    def _fully_read(self) -> bool:
        length = self._response.length_remaining
        return length is not None and length == 0

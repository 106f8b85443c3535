"""Get Blob over `bascule.connectors.http` (see there why): the Azure request that carries
object data when Azure is the source.

Authentication, as the service documents it ("Authorize with Shared Key", "Create a service
SAS", "Authorize with Microsoft Entra ID"): an account key signs each request (SharedKey), a
SAS rides in the query string, a token credential (DefaultAzureCredential) gives a bearer
token, refreshed before it expires. The API version is the SDK's own, so both paths speak the
same protocol. Errors carry the service's ``x-ms-error-code``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

import urllib3

from bascule.connectors.http import HttpFailure, PoolSettings, make_pool, retry_after

STORAGE_SCOPE = "https://storage.azure.com/.default"
TOKEN_MARGIN_S = 300.0  # a token is renewed this long before it expires
# The standard headers of the Shared Key string to sign, in its order (x-ms-* follow).
_SIGNED_HEADERS = (
    "Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type",
    "Date", "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range",
)  # fmt: skip


class Auth(Protocol):
    def apply(self, method: str, path: str, headers: dict[str, str]) -> None:
        """Add what authenticates a request for `path` (quoted, with its query)."""
        ...


class SharedKey:
    """An account key: each request signed (HMAC-SHA256 of the Shared Key string)."""

    def __init__(self, account: str, key_b64: str) -> None:
        self._account = account
        self._key = base64.b64decode(key_b64)

    def apply(self, method: str, path: str, headers: dict[str, str]) -> None:
        string = self.string_to_sign(method, path, headers)
        digest = hmac.new(self._key, string.encode("utf-8"), hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {self._account}:{base64.b64encode(digest).decode()}"

    def string_to_sign(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        standard = [headers.get(name, "") for name in _SIGNED_HEADERS]
        if standard[2] == "0":
            standard[2] = ""  # Content-Length 0 is signed as empty (version 2015-02-21 on)
        ms = sorted(
            (k.lower(), v.strip()) for k, v in headers.items() if k.lower().startswith("x-ms-")
        )
        canonical_headers = "".join(f"{k}:{v}\n" for k, v in ms)
        parts = urlsplit(path)
        resource = f"/{self._account}{parts.path}"
        for name, value in sorted((k.lower(), v) for k, v in parse_qsl(parts.query)):
            resource += f"\n{name}:{value}"
        return "\n".join([method, *standard, canonical_headers + resource])


class Sas:
    """A shared access signature: the query string of every request."""

    def __init__(self, query: str) -> None:
        self.query = query.lstrip("?")

    def apply(self, method: str, path: str, headers: dict[str, str]) -> None:
        return None  # the query string is added to the path by `BlobRest`


class Bearer:
    """A token credential (azure-identity): ``Authorization: Bearer``, token cached."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential
        self._lock = threading.Lock()
        self._token = ""
        self._expires = 0.0

    def apply(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            if time.time() > self._expires - TOKEN_MARGIN_S:
                token = self._credential.get_token(STORAGE_SCOPE)
                self._token, self._expires = str(token.token), float(token.expires_on)
            headers["Authorization"] = f"Bearer {self._token}"


class BlobRest:
    """Get Blob on one container. Thread-safe (one pool, shared)."""

    def __init__(
        self, container_url: str, auth: Auth, api_version: str, settings: PoolSettings
    ) -> None:
        parts = urlsplit(container_url)
        self._prefix = parts.path.rstrip("/")
        self._pool = make_pool(f"{parts.scheme}://{parts.netloc}", settings)
        self._auth = auth
        self._version = api_version

    def get(
        self, key: str, start: int | None = None, length: int | None = None, if_match: str = ""
    ) -> urllib3.BaseHTTPResponse:
        """Get Blob (streamed): `length` bytes from `start` when given; If-Match when set."""
        path = f"{self._prefix}/{quote(key, safe='/~')}"
        if isinstance(self._auth, Sas):
            path += f"?{self._auth.query}"
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": self._version}
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        if start is not None and length is not None:
            headers["x-ms-range"] = f"bytes={start}-{start + length - 1}"
        self._auth.apply("GET", path, headers)
        response = self._pool.urlopen(
            "GET", path, headers=headers, preload_content=False, decode_content=False,
            redirect=False, assert_same_host=False,
        )  # fmt: skip
        if response.status >= 300:
            raise _failure(response)
        return response


def _failure(response: urllib3.BaseHTTPResponse) -> HttpFailure:
    """The service's error: its x-ms-error-code header (a body may say more)."""
    headers = dict(response.headers.items())
    try:
        body = response.read(4096)
    except urllib3.exceptions.HTTPError:
        body = b""
    response.close()
    response.release_conn()
    code = headers.get("x-ms-error-code", "")
    return HttpFailure(
        response.status, code, body.decode("utf-8", "replace")[:200], retry_after(headers), headers
    )

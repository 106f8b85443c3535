"""The data path's HTTP client, shared by the S3 and Azure connectors: libcurl (pycurl).

Why not the SDKs: a request through boto3 costs about 2 ms of CPU and one through
azure-storage-blob about 2.6 ms (32 KiB objects over HTTPS, one thread), and their listing
parsers 0.12 and 0.35 ms per object. Why not urllib3: 0.74 ms per Get Blob, a third of it in
http.client's header parsing (the email package), and 16 KiB TLS records read through three
Python layers (1.5 s of CPU per GiB read); libcurl answers the same request in 0.32 ms and
reads in 1 MiB callbacks, with the GIL released while it waits. So the requests that carry
object data (read an object or a range of it, write an object or a part, list) go through
here, and so do S3's control requests (opening and committing uploads, stat), whose cost is
per object, because boto3's import and client cost every run about 0.24 s; Azure's control
requests stay on its SDK. A part's read goes through `Transport.get_to`, each piece
handed to the caller's sink in the caller's thread; `stream` (a body thread and a queue)
serves readers that want a file object.

Contract: a reply that is not 2xx raises `HttpFailure` (status, the provider's error code
when its body or headers give one, message, Retry-After); a request that got no complete
answer raises `NetworkError` (refused, reset, cut, timed out; `certificate_failure` when the
server's certificate does not verify). The connectors map both in their single error-mapping
function. Nothing retries here: the one retry policy (`bascule.migration.retry`) decides.

Connections: each libcurl handle keeps its connection open; idle handles wait in a pool (up
to `max_connections` per host), reset as they come back (options only, the connection
kept: an idle handle holds no body). HTTP/1.1 only, no redirects, no ``Expect:
100-continue`` round trip, the proxy settings of the environment (as botocore). TLS trusts
the endpoint's ``ca_bundle``, else certifi's bundle (as boto3 and requests).
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pycurl

# libcurl's codes for a certificate that does not verify (permanent: retrying meets it again)
_CERTIFICATE_CODES = frozenset(
    {pycurl.E_PEER_FAILED_VERIFICATION, pycurl.E_SSL_CACERT_BADFILE, pycurl.E_SSL_CERTPROBLEM}
)
Body = bytes | bytearray | memoryview  # a request body
BUFFER_BYTES = 1024 * 1024  # libcurl's receive buffer: body callbacks of up to 1 MiB
IN_MEMORY_BYTES = 4 * 1024 * 1024  # a read up to this size is fetched whole, in the caller
UPLOAD_PIECE_BYTES = 512 * 1024  # a body that is not `bytes` is handed to libcurl in such pieces
# A streamed body is handed over in batches of callbacks (a thread hand-off per 16 KiB TLS
# record cost 1.2 CPU s per GiB), at most a few batches ahead of its reader.
_BATCH_BYTES = 256 * 1024
_QUEUED_CHUNKS = 4


class NetworkError(OSError):
    """No complete answer: refused, reset, cut short, timed out, or TLS refused."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.curl_code = code
        self.certificate_failure = code in _CERTIFICATE_CODES

    def __str__(self) -> str:
        return f"{self.strerror} (libcurl error {self.curl_code})"


NETWORK_ERRORS: tuple[type[BaseException], ...] = (NetworkError,)


@dataclass(frozen=True)
class HttpFailure(Exception):
    """A reply that is not 2xx."""

    status: int
    code: str = ""  # the provider's error code (S3 <Code>, Azure x-ms-error-code)
    message: str = ""
    retry_after_s: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        """One line: errors are printed as one line."""
        return " ".join(f"{self.code or self.status}: {self.message}".split()).strip(": ")


@dataclass(frozen=True)
class PoolSettings:
    """How the data path connects: TLS trust, timeouts and pool size."""

    ca_bundle: str | None = None  # PEM of the CAs to trust; None: certifi's bundle, as boto3
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # no byte for this long: the request is cut (and retried)
    max_connections: int = 64  # kept open per host: at least the run's concurrency


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # lowercase names
    body: bytes


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (HTTP dates are not sent by object stores: ignored)."""
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def parse_head(lines: list[bytes]) -> tuple[int, dict[str, str]]:
    """The status and headers (names lowercase) of the last response in `lines`, the raw
    header lines libcurl hands over (a 1xx interim block comes first and is dropped).

    Joined and decoded once, then split: a reply's 20 header lines parse in 8 us rather than
    13 line by line, and every request of the data path parses one."""
    text = b"".join(lines).decode("iso-8859-1")
    start = text.rfind("\nHTTP/") + 1  # 0: the block holds one response
    if not text.startswith("HTTP/", start):
        return 0, {}
    status_line, _, rest = text[start:].partition("\n")
    values: dict[str, str] = {}
    for line in rest.split("\n"):
        name, colon, value = line.partition(":")
        if colon:
            values[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), values


class _Headers:
    """A HEADERFUNCTION for a streamed reply, whose reader waits for the headers: the last
    response's status and headers, and an event set once they are complete."""

    def __init__(self) -> None:
        self.status = 0
        self.values: dict[str, str] = {}
        self.complete = threading.Event()
        self._lines: list[bytes] = []

    def __call__(self, line: bytes) -> None:
        self._lines.append(line)
        if line in (b"\r\n", b"\n"):
            status, values = parse_head(self._lines)
            if status >= 200:
                self.status, self.values = status, values
                self.complete.set()


class Transport:
    """Requests to one host (``scheme://host:port``). Thread-safe."""

    def __init__(self, base_url: str, settings: PoolSettings) -> None:
        parts = urlsplit(base_url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self._settings = settings
        self._ca = settings.ca_bundle or _default_ca_bundle()
        self._idle: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def _take(self) -> pycurl.Curl:
        with self._lock:
            handle = self._idle.pop() if self._idle else None
        if handle is None:
            handle = pycurl.Curl()
        self._configure(handle)
        return handle

    def _give_back(self, handle: pycurl.Curl, reusable: bool) -> None:
        if reusable:
            # Options only (its connection stays open): an idle handle must not keep its last
            # request's body or callbacks alive (a part is megabytes).
            handle.reset()
            with self._lock:
                if len(self._idle) < self._settings.max_connections:
                    self._idle.append(handle)
                    return
        handle.close()

    def _configure(self, handle: pycurl.Curl) -> None:
        s = self._settings
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(s.connect_timeout_s * 1000))
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, int(s.read_timeout_s)))
        handle.setopt(pycurl.BUFFERSIZE, BUFFER_BYTES)
        handle.setopt(pycurl.TCP_KEEPALIVE, 1)
        if self._ca:
            handle.setopt(pycurl.CAINFO, self._ca)

    def _prepare(
        self,
        handle: pycurl.Curl,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: Body | None,
    ) -> None:
        handle.setopt(pycurl.URL, self.base + path)
        lines = [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Expect:", "Accept:"]  # no 100-continue round trip; no header unasked for
        if method == "GET":
            handle.setopt(pycurl.HTTPGET, 1)
        elif method == "HEAD":
            handle.setopt(pycurl.NOBODY, 1)  # a HEAD reply's Content-Length has no body
        elif isinstance(body, bytes):
            handle.setopt(pycurl.CUSTOMREQUEST, method)
            handle.setopt(pycurl.POSTFIELDS, body)
            handle.setopt(pycurl.POSTFIELDSIZE_LARGE, len(body))
            lines.append("Content-Type:")  # libcurl would add a form type
        elif body is not None:  # POSTFIELDS takes bytes only: the body is read in pieces
            view = memoryview(body).cast("B")
            handle.setopt(pycurl.UPLOAD, 1)
            handle.setopt(pycurl.CUSTOMREQUEST, method)
            handle.setopt(pycurl.INFILESIZE_LARGE, len(view))
            handle.setopt(pycurl.UPLOAD_BUFFERSIZE, UPLOAD_PIECE_BYTES)
            handle.setopt(pycurl.READFUNCTION, _PieceReader(view))
        else:
            handle.setopt(pycurl.CUSTOMREQUEST, method)
        handle.setopt(pycurl.HTTPHEADER, lines)

    def request(
        self, method: str, path: str, headers: Mapping[str, str], body: Body | None = None
    ) -> Reply:
        """One request, its whole reply read (small bodies). NetworkError if no answer.
        A `body` that is not `bytes` (a view of a buffer its caller reuses) is read during
        the call only, piece by piece, never copied whole."""
        handle = self._take()
        reusable = False
        try:
            self._prepare(handle, method, path, headers, body)
            # Plain list appends (C calls, no Python frame per line or per piece), parsed once
            head: list[bytes] = []
            chunks: list[bytes] = []
            handle.setopt(pycurl.HEADERFUNCTION, head.append)
            handle.setopt(pycurl.WRITEFUNCTION, chunks.append)
            try:
                handle.perform()
            except pycurl.error as exc:
                raise NetworkError(exc.args[0], str(exc.args[1])) from None
            reusable = True
            status, values = parse_head(head)
            return Reply(status, values, b"".join(chunks))
        finally:
            self._give_back(handle, reusable)

    def get(
        self,
        path: str,
        headers: Mapping[str, str],
        length: int | None,
        failure: Callable[[int, Mapping[str, str], bytes], Exception],
    ) -> tuple[Mapping[str, str], io.RawIOBase | io.BytesIO]:
        """A GET of `length` bytes (None: unknown): its headers and body, read whole when it
        is at most IN_MEMORY_BYTES, else streamed. A status of 300 or more raises
        `failure(status, headers, body)`."""
        if length is not None and length <= IN_MEMORY_BYTES:
            reply = self.request("GET", path, headers)
            if reply.status >= 300:
                raise failure(reply.status, reply.headers, reply.body)
            return reply.headers, io.BytesIO(reply.body)
        head, body = self.stream(path, headers)
        if head.status >= 300:
            with body:
                raise failure(head.status, head.headers, body.read_all())
        return head.headers, body

    def get_to(
        self,
        path: str,
        headers: Mapping[str, str],
        sink: Callable[[bytes], None],
        accept: Callable[[Mapping[str, str]], None],
        failure: Callable[[int, Mapping[str, str], bytes], Exception],
    ) -> None:
        """A GET whose body goes to `sink` piece by piece, in this thread, as libcurl
        receives it (the GIL is released between pieces). `accept(headers)` of a 2xx reply
        runs before its first piece; a status of 300 or more raises `failure(status,
        headers, body)`. An exception from `accept` or `sink` stops the transfer (its
        connection is dropped) and is raised unchanged."""
        handle = self._take()
        reusable = False
        head: list[bytes] = []
        body = _SinkWriter(head, sink, accept)
        try:
            self._prepare(handle, "GET", path, headers, None)
            handle.setopt(pycurl.HEADERFUNCTION, head.append)
            handle.setopt(pycurl.WRITEFUNCTION, body)
            try:
                handle.perform()
            except pycurl.error as exc:
                if body.error is not None:
                    raise body.error from None
                raise NetworkError(exc.args[0], str(exc.args[1])) from None
            reusable = True
            body.begin()  # an empty body: the reply is judged here
            if body.error is not None:
                raise body.error
            if body.status >= 300:
                raise failure(body.status, body.headers, b"".join(body.refused))
        finally:
            self._give_back(handle, reusable)

    def stream(self, path: str, headers: Mapping[str, str]) -> tuple[Reply, ReplyStream]:
        """A GET whose body is read as it arrives (a libcurl transfer in a thread of its own,
        at most a few MiB ahead of the reader). Returns once the headers are in: the reply
        (empty body) and the stream of its body."""
        handle = self._take()
        self._prepare(handle, "GET", path, headers, None)
        reply_headers = _Headers()
        handle.setopt(pycurl.HEADERFUNCTION, reply_headers)
        body = ReplyStream(self, handle, reply_headers)
        body.start()
        return Reply(reply_headers.status, reply_headers.values, b""), body


_END = object()


class _PieceReader:
    """libcurl's READFUNCTION over a view: the next piece of at most `size` bytes (a copy
    of under 1 MiB, so that malloc reuses its memory instead of mapping fresh pages)."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def __call__(self, size: int) -> bytes:
        start = self._pos
        self._pos = min(len(self._view), start + size)
        return self._view[start : self._pos].tobytes()


class _SinkWriter:
    """libcurl's WRITEFUNCTION for `Transport.get_to`: the reply's head is judged at its
    first piece; a 2xx body goes to the sink, another one is kept for the error."""

    def __init__(
        self,
        head: list[bytes],
        sink: Callable[[bytes], None],
        accept: Callable[[Mapping[str, str]], None],
    ) -> None:
        self._head = head
        self._sink = sink
        self._accept = accept
        self.started = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.refused: list[bytes] = []  # the body of a reply that is not 2xx
        self.error: BaseException | None = None

    def begin(self) -> None:
        if self.started:
            return
        self.started = True
        self.status, self.headers = parse_head(self._head)
        if self.status < 300:
            try:
                self._accept(self.headers)
            except BaseException as exc:  # raised again by get_to, unchanged
                self.error = exc

    def __call__(self, piece: bytes) -> int | None:
        self.begin()
        if self.error is not None:
            return 0  # stops the transfer (CURLE_WRITE_ERROR)
        if self.status >= 300:
            self.refused.append(piece)
            return None
        try:
            self._sink(piece)
        except BaseException as exc:  # raised again by get_to, unchanged
            self.error = exc
            return 0
        return None


class ReplyStream(io.RawIOBase):
    """A streamed reply body. `readinto` blocks until data arrives; NetworkError if the
    transfer is cut. Closing it early aborts the transfer (its connection is dropped)."""

    def __init__(self, transport: Transport, handle: pycurl.Curl, headers: _Headers) -> None:
        self._transport = transport
        self._handle = handle
        self._headers = headers
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._pending: list[bytes] = []  # callbacks not handed over yet (body thread only)
        self._pending_bytes = 0
        self._current = memoryview(b"")
        self._abandoned = False
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="http-body", daemon=True)

    def start(self) -> None:
        self._handle.setopt(pycurl.WRITEFUNCTION, self._write)
        self._thread.start()
        while not self._headers.complete.wait(0.05):
            if not self._thread.is_alive():
                break
        if not self._headers.complete.is_set():  # no answer: the transfer's own error
            self._thread.join()
            self._raise_queued()

    def _run(self) -> None:
        try:
            self._handle.perform()
            self._flush()
            self._put(_END)
        except pycurl.error as exc:
            self._flush()  # what arrived before the cut is still the body's
            self._put(NetworkError(exc.args[0], str(exc.args[1])))
        finally:
            if self._headers.status:  # a reply began: its reader learns how it ended
                self._headers.complete.set()

    def _put(self, item: object) -> None:
        while not self._abandoned:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _write(self, chunk: bytes) -> int | None:
        if self._abandoned:
            return 0  # aborts the transfer (CURLE_WRITE_ERROR)
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= _BATCH_BYTES:
            self._flush()
        return None

    def _flush(self) -> None:
        if self._pending:
            batch = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending, self._pending_bytes = [], 0
            self._put(batch)

    def _raise_queued(self) -> None:
        item = self._queue.get_nowait() if not self._queue.empty() else _END
        if isinstance(item, NetworkError):
            raise item
        raise NetworkError(pycurl.E_GOT_NOTHING, "the server sent no reply")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not len(self._current):
            if self._finished:
                return 0
            item = self._queue.get()
            if item is _END:
                self._finished = True
                self._thread.join()
                self._transport._give_back(self._handle, reusable=True)
                return 0
            if isinstance(item, NetworkError):
                self._finished = True
                self._abandon()
                raise item
            assert isinstance(item, bytes)
            self._current = memoryview(item)
        n = min(len(buffer), len(self._current))
        buffer[:n] = self._current[:n]
        self._current = self._current[n:]
        return n

    def read_all(self) -> bytes:
        """The rest of the body (an error reply's, for instance)."""
        pieces = []
        buffer = bytearray(BUFFER_BYTES)
        while n := self.readinto(buffer):
            pieces.append(bytes(buffer[:n]))
        return b"".join(pieces)

    def _abandon(self) -> None:
        self._abandoned = True
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)  # unblock a callback waiting for room
            except queue.Empty:
                continue
        self._handle.close()

    def close(self) -> None:
        if not self.closed and not self._finished:
            self._finished = True
            self._abandon()
        super().close()


class MappedReader(io.RawIOBase):
    """The bytes of `raw`, its errors mapped by `mapper` (a connector's error function), so
    that a body cut while it is read comes out as the connector's own error."""

    def __init__(self, raw: Any, mapper: Callable[[BaseException], Exception]) -> None:
        self._raw = raw
        self._mapper = mapper

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._raw.readinto(buffer))
        except NETWORK_ERRORS as exc:
            raise self._mapper(exc) from exc

    def close(self) -> None:
        self._raw.close()
        super().close()


def _default_ca_bundle() -> str:
    """certifi's CA bundle: the one boto3 and requests trust when no bundle is given."""
    import certifi

    return str(certifi.where())

"""A fault-injecting HTTP reverse proxy for tests, on 127.0.0.1 only.

Clients point their endpoint at the proxy; it forwards each request to one upstream server
(Azurite, rclone serve s3, moto) and, with a seeded random draw per request, injects one fault:

- ``throttle``: 503 with the vendor's code (S3 ``SlowDown``, Azure ``ServerBusy``), not forwarded;
- ``error500``: 500 ``InternalError``, not forwarded;
- ``retry_after``: 429 with ``Retry-After: <retry_after_s>``, not forwarded;
- ``reset``: forwarded, then the connection is reset in the middle of the response body;
- ``truncate``: forwarded, then the body stops short of its Content-Length and the socket closes;
- ``slow``: forwarded after a delay of ``slow_s``.

Every request's method, path and body size is kept in `received` (what the client sent), and
its headers in `received_headers`.
Faults hit only the requests `applies` accepts (by default every request except listings),
and never more than `max_faults`. Every injection is counted in `injected`, per kind.

Apart from faults, `max_part_number` makes the proxy behave like a provider with a lower
part-count limit (Scaleway: 1,000): an UploadPart whose partNumber is above it is refused with
400 ``InvalidArgument``, as S3 does, and counted in `refused_parts`; `part_numbers` records
every part number that was forwarded.
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

FAULTS = ("throttle", "error500", "retry_after", "reset", "truncate", "slow")
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}


@dataclass
class FaultPlan:
    rate: float = 0.1  # probability that a request gets a fault
    kinds: tuple[str, ...] = FAULTS
    seed: int = 1
    retry_after_s: float = 1.0
    slow_s: float = 0.3
    flavour: str = "s3"  # "s3" or "azure": how error bodies look
    max_faults: int | None = None
    applies: Callable[[str, str], bool] = field(default=lambda method, path: True)
    # Requests `hold` accepts are held (not forwarded) until `release()`: a test can kill the
    # client while it waits on exactly that request (listing, a part upload, the commit).
    hold: Callable[[str, str], bool] = field(default=lambda method, path: False)
    hold_after_forward: bool = False  # hold once upstream has answered (it did the work)
    max_part_number: int | None = None  # UploadPart above this is refused (InvalidArgument)


class FaultProxy:
    """Start with `start()`, stop with `stop()`; `url` is what clients use."""

    def __init__(self, upstream_url: str, plan: FaultPlan) -> None:
        parsed = urlparse(upstream_url)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.plan = plan
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.retry_after_seen: list[float] = []  # arrival times after a 429 answer
        self.refused_parts: list[int] = []  # part numbers refused as above max_part_number
        self.part_numbers: list[int] = []  # part numbers forwarded upstream
        self.received: list[tuple[str, str, int]] = []  # (method, path, body bytes)
        self.received_headers: list[dict[str, str]] = []  # each request's, names lowercase
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.holding = threading.Event()  # set while a request is held
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def rearm(self) -> None:
        """Hold the next matching request again."""
        self.holding.clear()
        self._released.clear()

    def wait_held(self, request: tuple[str, str]) -> None:
        if self.plan.hold(*request) and not self._released.is_set():
            self.holding.set()
            self._released.wait(timeout=60)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def draw(self, method: str, path: str) -> str | None:
        with self._lock:
            self.requests += 1
            if not self.plan.applies(method, path):
                return None
            if (
                self.plan.max_faults is not None
                and sum(self.injected.values()) >= self.plan.max_faults
            ):
                return None
            if self._rng.random() >= self.plan.rate:
                return None
            kind = self._rng.choice(self.plan.kinds)
            self.injected[kind] += 1
            return kind

    def part_refused(self, method: str, path: str) -> bool:
        """True (and recorded) for an UploadPart above the configured part-number limit."""
        if method != "PUT":
            return False
        query = parse_qs(urlparse(path).query)
        if "uploadId" not in query or "partNumber" not in query:
            return False
        number = int(query["partNumber"][0])
        limit = self.plan.max_part_number
        with self._lock:
            if limit is not None and number > limit:
                self.refused_parts.append(number)
                return True
            self.part_numbers.append(number)
        return False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        body = self._body()
        with self.owner._lock:
            self.owner.received.append((self.command, self.path, len(body)))
            self.owner.received_headers.append({k.lower(): v for k, v in self.headers.items()})
        if not self.owner.plan.hold_after_forward:
            self.owner.wait_held((self.command, self.path))
        if self.owner.part_refused(self.command, self.path):
            self._refuse_part()
            return
        fault = self.owner.draw(self.command, self.path)
        if fault in ("throttle", "error500", "retry_after"):
            self._refuse(fault)
            return
        if fault == "slow":
            time.sleep(self.owner.plan.slow_s)
        status, reason, headers, payload = self._forward(body)
        if self.owner.plan.hold_after_forward:
            self.owner.wait_held((self.command, self.path))
        if fault == "reset" and payload:
            self._send_head(status, reason, headers, len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            _reset(self.connection)
            self.close_connection = True
            return
        if fault == "truncate" and payload:
            self._send_head(status, reason, headers, len(payload))
            self.wfile.write(payload[: len(payload) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self._send_head(status, reason, headers, len(payload))
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS]
            return resp.status, resp.reason, kept, payload
        finally:
            conn.close()

    def _send_head(
        self, status: int, reason: str, headers: list[tuple[str, str]], length: int
    ) -> None:
        """Upstream's headers; Content-Length is the body's, except for HEAD, whose
        Content-Length describes the object and is passed through."""
        self.send_response_only(status, reason)
        for k, v in headers:
            if k.lower() != "content-length" or self.command == "HEAD":
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _refuse_part(self) -> None:
        limit = self.owner.plan.max_part_number
        payload = (
            "<Error><Code>InvalidArgument</Code><Message>Part number must be an integer "
            f"between 1 and {limit}, inclusive</Message></Error>"
        ).encode()
        self.send_response_only(400)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _refuse(self, fault: str) -> None:
        plan = self.owner.plan
        status, code = {
            "throttle": (503, "SlowDown" if plan.flavour == "s3" else "ServerBusy"),
            "error500": (500, "InternalError"),
            "retry_after": (429, "TooManyRequests"),
        }[fault]
        if plan.flavour == "s3":
            payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
            ctype = "application/xml"
        else:
            payload = (
                f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
                "<Message>injected</Message></Error>"
            ).encode()
            ctype = "application/xml"
        self.send_response_only(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        if plan.flavour == "azure":
            self.send_header("x-ms-error-code", code)
        if fault == "retry_after":
            self.send_header("Retry-After", str(int(plan.retry_after_s)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: what a client sees when a load balancer drops it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

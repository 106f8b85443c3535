"""Reading the optional PEM armor of age files, strictly and as a stream.

```
-----BEGIN AGE ENCRYPTED FILE-----
<standard padded base64, 64 columns per line, the last line shorter or equal>
-----END AGE ENCRYPTED FILE-----
```
Lines end with LF or CRLF; whitespace is allowed before and after the armor, nowhere else.
Base64 must be canonical. We read armor (an operator may hand us `age -a` output) but
never write it: random access needs the binary form.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from bascule.age.errors import AgeArmorError

BEGIN_LINE = b"-----BEGIN AGE ENCRYPTED FILE-----"
END_LINE = b"-----END AGE ENCRYPTED FILE-----"
COLUMNS = 64
MAX_SURROUNDING_WHITESPACE = 1024
_WHITESPACE = b" \t\r\n"


class ByteSource:
    """Buffered reads over a `read(n)` function: exact-or-EOF reads, lines, peeking."""

    def __init__(self, read: Callable[[int], bytes], block_size: int = 1024 * 1024) -> None:
        self._read = read
        self._block = block_size
        self._buf = bytearray()
        self._eof = False

    def _fill(self, n: int) -> None:
        while len(self._buf) < n and not self._eof:
            data = self._read(max(self._block, n - len(self._buf)))
            if not data:
                self._eof = True
            self._buf += data

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[:n])

    def read(self, n: int) -> bytes:
        """`n` bytes, fewer only at the end of the input."""
        self._fill(n)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def readline(self, limit: int) -> bytes:
        """One line incl. its LF; at most `limit` bytes (the caller checks for the LF)."""
        while True:
            end = self._buf.find(b"\n", 0, limit)
            if end >= 0:
                return self.read(end + 1)
            if len(self._buf) >= limit or self._eof:
                return self.read(limit)
            self._fill(len(self._buf) + 1)


def is_armored(source: ByteSource) -> bool:
    """Whether the input starts (after whitespace) like PEM armor; consumes nothing."""
    head = source.peek(MAX_SURROUNDING_WHITESPACE + len(BEGIN_LINE))
    return head.lstrip(_WHITESPACE).startswith(b"-----")


class ArmorReader:
    """The decoded bytes of an armored age file; raises AgeArmorError on any deviation."""

    def __init__(self, source: ByteSource) -> None:
        self._src = source
        self._started = False
        self._done = False
        self._pending = bytearray()

    def _line(self) -> bytes:
        line = self._src.readline(COLUMNS + 2)
        if line.endswith(b"\r\n"):
            return line[:-2]
        if line.endswith(b"\n"):
            return line[:-1]
        if len(line) > COLUMNS:
            raise AgeArmorError("armored line longer than 64 columns")
        return line  # the last line may lack its end of line

    def _start(self) -> None:
        skipped = 0
        while self._src.peek(1) in (b" ", b"\t", b"\r", b"\n"):
            self._src.read(1)
            skipped += 1
            if skipped > MAX_SURROUNDING_WHITESPACE:
                raise AgeArmorError("too much whitespace before the armor")
        if self._line() != BEGIN_LINE:
            raise AgeArmorError(f"the armor must start with '{BEGIN_LINE.decode()}'")
        self._started = True

    def _finish(self) -> None:
        rest = self._src.read(MAX_SURROUNDING_WHITESPACE + 1)
        if rest.strip(_WHITESPACE):
            raise AgeArmorError("data after the end of the armor")
        if len(rest) > MAX_SURROUNDING_WHITESPACE:
            raise AgeArmorError("too much whitespace after the armor")
        self._done = True

    def _next_block(self) -> bytes:
        if not self._started:
            self._start()
        line = self._line()
        if line == END_LINE:
            self._finish()
            return b""
        if not line:
            raise AgeArmorError("empty or missing line inside the armor")
        data = _decode_line(line)
        if len(line) < COLUMNS:
            if self._line() != END_LINE:
                raise AgeArmorError(f"a short armor line must be followed by '{END_LINE.decode()}'")
            self._finish()
        return data

    def read(self, n: int) -> bytes:
        """Up to `n` decoded bytes; b"" once the END line and trailing whitespace are read."""
        while len(self._pending) < n and not self._done:
            self._pending += self._next_block()
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data


def _decode_line(line: bytes) -> bytes:
    try:
        data = base64.b64decode(line, validate=True)
    except binascii.Error:
        raise AgeArmorError("invalid base64 inside the armor") from None
    if base64.b64encode(data) != line:
        raise AgeArmorError("non-canonical base64 inside the armor")
    return data

"""The age v1 header: grammar, writing, unwrapping the file key, and its MAC.

```
age-encryption.org/v1
-> X25519 <base64 ephemeral share>
<base64 body, 64 columns per line, ending with a line shorter than 64 (maybe empty)>
--- <base64 HMAC-SHA-256 over everything up to and including "---">
```
Base64 is the standard alphabet without padding and must be canonical. Stanzas of every type
are parsed by the generic grammar; the types we know (X25519, scrypt, mlkem768x25519) are
also checked for shape, so a malformed one is a header failure even when it is not ours.
Only X25519 stanzas are ever unwrapped.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from bascule.age.errors import AgeHeaderError, AgeHeaderMacError, AgeNoMatchError
from bascule.age.keys import (
    FILE_KEY_SIZE,
    X25519Identity,
    X25519Recipient,
    hkdf_sha256,
    hmac_sha256,
)

VERSION_LINE = b"age-encryption.org/v1"
MAC_PREFIX = b"--- "
STANZA_PREFIX = b"-> "
BODY_COLUMNS = 64
MAX_HEADER_BYTES = 1024 * 1024  # far above any real header; bounds memory on garbage input
_ARG_RE = re.compile(rb"^[\x21-\x7e]+$")
_B64_RE = re.compile(rb"^[A-Za-z0-9+/]*$")
_SCRYPT_WORK_FACTOR_RE = re.compile(rb"^[1-9][0-9]*$")
_SCRYPT_MAX_WORK_FACTOR = 22  # as the reference implementation: 2**22 is ~1 s; more is abuse
_MLKEM768X25519_ENC_SIZE = 1088 + 32  # ML-KEM-768 ciphertext + X25519 share
_WRAPPED_KEY_SIZE = FILE_KEY_SIZE + 16
_PROBE_KEY = X25519PrivateKey.generate()


@dataclass(frozen=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class Header:
    """A parsed header. `raw` is its full text incl. the MAC line (`len(raw)` = header length)."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    raw: bytes
    mac_input: bytes  # what the MAC covers: the header up to and including "---"


def b64_decode_canonical(text: bytes, what: str) -> bytes:
    """Decode unpadded standard base64, refusing any non-canonical encoding."""
    if not _B64_RE.match(text) or len(text) % 4 == 1:
        raise AgeHeaderError(f"invalid base64 in {what}")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise AgeHeaderError(f"invalid base64 in {what}") from None
    if b64_encode(data) != text:
        raise AgeHeaderError(f"non-canonical base64 in {what}")
    return data


def b64_encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _lines(buf: bytes, start: int) -> tuple[bytes, int] | None:
    end = buf.find(b"\n", start)
    if end < 0:
        return None
    return buf[start:end], end + 1


def parse_header_prefix(buf: bytes) -> Header | None:
    """The header at the start of `buf`, or None if `buf` ends before the header does.

    Raises AgeHeaderError as soon as what `buf` holds breaks the grammar."""
    got = _lines(buf, 0)
    if got is None:
        _check_partial_version(buf)
        return None
    line, pos = got
    if line != VERSION_LINE:
        if line.startswith(b"age-encryption.org/"):
            raise AgeHeaderError(f"unsupported age version {line[:40]!r}; only v1 is supported")
        raise AgeHeaderError("not an age file: it does not start with 'age-encryption.org/v1'")
    stanzas: list[Stanza] = []
    while True:
        got = _lines(buf, pos)
        if got is None:
            return None
        line, next_pos = got
        if line.startswith(MAC_PREFIX):
            mac = b64_decode_canonical(line[len(MAC_PREFIX) :], "the header MAC")
            if len(mac) != 32:
                raise AgeHeaderError("the header MAC is not 32 bytes")
            if not stanzas:
                raise AgeHeaderError("the header has no recipient stanza")
            return Header(tuple(stanzas), mac, buf[:next_pos], buf[: pos + 3])
        if not line.startswith(STANZA_PREFIX):
            raise AgeHeaderError(f"unexpected header line {line[:20]!r}...")
        parsed = _parse_stanza(buf, pos, line)
        if parsed is None:
            return None
        stanza, pos = parsed
        stanzas.append(stanza)


def _check_partial_version(buf: bytes) -> None:
    if not VERSION_LINE.startswith(buf[: len(VERSION_LINE)]):
        raise AgeHeaderError("not an age file: it does not start with 'age-encryption.org/v1'")


def _parse_stanza(buf: bytes, pos: int, first: bytes) -> tuple[Stanza, int] | None:
    args = first[len(STANZA_PREFIX) :].split(b" ")
    if not all(_ARG_RE.match(a) for a in args):
        raise AgeHeaderError("a stanza has an empty argument or an invalid character")
    pos = pos + len(first) + 1
    body = bytearray()
    while True:
        got = _lines(buf, pos)
        if got is None:
            return None
        line, pos = got
        if len(line) > BODY_COLUMNS:
            raise AgeHeaderError("a stanza body line is longer than 64 columns")
        body += b64_decode_canonical(line, "a stanza body")
        if len(line) < BODY_COLUMNS:
            break
    stanza = Stanza(args[0].decode(), tuple(a.decode() for a in args[1:]), bytes(body))
    _check_known_stanza(stanza)
    return stanza, pos


def _check_known_stanza(stanza: Stanza) -> None:
    """Shape checks of the stanza types we know, so a malformed one fails even if not ours."""
    if stanza.type == "X25519":
        _x25519_share(stanza)
    elif stanza.type == "scrypt":
        if len(stanza.args) != 2:
            raise AgeHeaderError("an scrypt stanza takes exactly two arguments")
        salt = b64_decode_canonical(stanza.args[0].encode(), "an scrypt salt")
        if len(salt) != 16:
            raise AgeHeaderError("an scrypt salt is 16 bytes")
        factor = stanza.args[1].encode()
        if not _SCRYPT_WORK_FACTOR_RE.match(factor) or int(factor) > _SCRYPT_MAX_WORK_FACTOR:
            raise AgeHeaderError(f"invalid scrypt work factor (1..{_SCRYPT_MAX_WORK_FACTOR})")
    elif stanza.type == "mlkem768x25519":
        if len(stanza.args) != 1:
            raise AgeHeaderError("an mlkem768x25519 stanza takes exactly one argument")
        enc = b64_decode_canonical(stanza.args[0].encode(), "an mlkem768x25519 share")
        if len(enc) != _MLKEM768X25519_ENC_SIZE:
            raise AgeHeaderError("an mlkem768x25519 share has the wrong length")
        if is_low_order_point(enc[-32:]):
            raise AgeHeaderError("an mlkem768x25519 stanza has a low-order X25519 share")
    else:
        return
    if len(stanza.body) != _WRAPPED_KEY_SIZE:
        raise AgeHeaderError(f"a {stanza.type} stanza body must be {_WRAPPED_KEY_SIZE} bytes")


def is_low_order_point(share: bytes) -> bool:
    """Whether an X25519 public value gives the all-zero shared secret with every key.

    X25519 clamps scalars to multiples of the cofactor 8, so a point of order dividing 8
    yields zero whichever key is used: a throwaway key tells."""
    try:
        shared = _PROBE_KEY.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:  # OpenSSL refuses the all-zero result itself
        return True
    return shared == bytes(32)


def _x25519_share(stanza: Stanza) -> bytes:
    if len(stanza.args) != 1:
        raise AgeHeaderError("an X25519 stanza takes exactly one argument")
    share = b64_decode_canonical(stanza.args[0].encode(), "an X25519 share")
    if len(share) != 32:
        raise AgeHeaderError("an X25519 share is 32 bytes")
    return share


def parse_header_bytes(data: bytes) -> Header:
    """The header at the start of `data`; raises AgeHeaderError if malformed or incomplete."""
    header = parse_header_prefix(data[:MAX_HEADER_BYTES])
    if header is None:
        raise AgeHeaderError("the age header is truncated (no '--- <mac>' line)")
    return header


def _header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    mac_key = hkdf_sha256(file_key, b"", b"header")
    return hmac_sha256(mac_key, mac_input)


def encode_header(file_key: bytes, recipients: Sequence[X25519Recipient]) -> bytes:
    """A new header wrapping `file_key` for each recipient (a fresh ephemeral key each)."""
    parts = [VERSION_LINE, b"\n"]
    for recipient in recipients:
        share, body = recipient.wrap(file_key)
        parts += [STANZA_PREFIX, b"X25519 ", b64_encode(share), b"\n"]
        encoded = b64_encode(body)
        for i in range(0, len(encoded), BODY_COLUMNS):
            parts += [encoded[i : i + BODY_COLUMNS], b"\n"]
        if len(encoded) % BODY_COLUMNS == 0:
            parts.append(b"\n")  # a body always ends with a short line
    parts.append(b"---")
    mac_input = b"".join(parts)
    return mac_input + b" " + b64_encode(_header_mac(file_key, mac_input)) + b"\n"


def unwrap_header(header: Header, identities: Sequence[X25519Identity]) -> bytes:
    """The file key, after verifying the header MAC.

    Raises AgeHeaderError (scrypt mixed with other stanzas, low-order share),
    AgeNoMatchError (no identity opens any stanza), AgeHeaderMacError (MAC mismatch)."""
    types = [s.type for s in header.stanzas]
    if "scrypt" in types and len(types) > 1:
        raise AgeHeaderError("an scrypt stanza must be the only stanza of a header")
    file_key = _find_file_key(header, identities)
    if not hmac.compare_digest(_header_mac(file_key, header.mac_input), header.mac):
        raise AgeHeaderMacError("the age header MAC does not verify: the header was altered")
    return file_key


def _find_file_key(header: Header, identities: Sequence[X25519Identity]) -> bytes:
    for stanza in header.stanzas:
        if stanza.type != "X25519":
            continue
        share = _x25519_share(stanza)
        for identity in identities:
            file_key = identity.unwrap(share, stanza.body)
            if file_key is not None:
                return file_key
    kinds = ", ".join(sorted(set(s.type for s in header.stanzas)))
    raise AgeNoMatchError(
        f"no identity given ({len(identities)}) opens any of the {len(header.stanzas)} "
        f"recipient stanza(s) ({kinds}) of this file; use the identity file of one of the "
        "recipients it was encrypted to"
    )

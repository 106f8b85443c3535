"""age X25519 keys: bech32 encoding, recipients, identities and identity files.

Recipients (public keys) are ``age1...``; identities (secret keys) are
``AGE-SECRET-KEY-1...``. Both are bech32 (BIP 173 checksum, not bech32m) without BIP 173's
90-character limit, as age specifies. An identity's secret string is only reachable through
`X25519Identity.to_secret_string`: `repr`/`str` never show it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base
from nacl.exceptions import CryptoError

from bascule.age.errors import AgeHeaderError
from bascule.errors import ConfigError

RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
X25519_INFO = b"age-encryption.org/v1/X25519"
FILE_KEY_SIZE = 16
_ZERO_NONCE = bytes(12)

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(_CHARSET)}
_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Bech32Error(ValueError):
    """A string is not valid bech32 (the message says why, never echoes a secret)."""


def _polymod(values: Sequence[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATORS):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Sequence[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc, bits, out = 0, 0, []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad and bits:
        out.append((acc << (to_bits - bits)) & max_value)
    elif not pad and (bits >= from_bits or (acc << (to_bits - bits)) & max_value):
        raise Bech32Error("invalid padding in the data part")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Lowercase bech32 of `data` under human-readable part `hrp`."""
    hrp = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """(lowercase hrp, data) of a bech32 string; raises Bech32Error if it is not one."""
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text):
        raise Bech32Error("separator '1' missing or data part too short")
    hrp, data_part = text[:sep], text[sep + 1 :]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid character in the prefix")
    try:
        values = [_CHARSET_REV[c] for c in data_part]
    except KeyError as exc:
        raise Bech32Error(f"invalid character {exc.args[0]!r} in the data part") from None
    if _polymod([*_hrp_expand(hrp), *values]) != 1:
        raise Bech32Error("checksum mismatch (typo or truncated key)")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))


_SHA256_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA-256 (RFC 2104) over `hashlib`, as the stdlib's `hmac` computes it without
    OpenSSL's HMAC: that one sets up an EVP context per call, 2.6 us against 1.7 here, and
    every object written costs seven (three HKDFs and the header MAC). Tested against
    `hmac.digest`."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(key.translate(_IPAD) + msg).digest()
    return hashlib.sha256(key.translate(_OPAD) + inner).digest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """32 bytes of HKDF-SHA-256 (RFC 5869), as age derives every key (an empty salt = no
    salt, i.e. 32 zero bytes). 32 bytes are one block of the expand step."""
    prk = hmac_sha256(salt or bytes(32), ikm)
    return hmac_sha256(prk, info + b"\x01")


# Ephemeral X25519 shares made ahead of the files that need them (`precompute_ephemerals`),
# per recipient public key: (share, shared secret) pairs, each taken once (a deque's
# popleft is atomic), held in this process's memory only, like the file keys they will
# wrap; never stored, logged or sent.
_READY: dict[bytes, deque[tuple[bytes, bytes]]] = {}
READY_MAX = 50_000  # per recipient: about 10 MB, 2.4 s of work on this kind of machine


def _ephemeral(public: bytes) -> tuple[bytes, bytes]:
    """(share, shared secret) of a fresh ephemeral key for `public`; CryptoError when
    `public` is a low-order point."""
    secret = os.urandom(32)  # any 32 bytes: X25519 clamps the scalar itself
    return crypto_scalarmult_base(secret), crypto_scalarmult(secret, public)


def precompute_ephemerals(
    recipients: Sequence[str], limit: int = READY_MAX, *, stop: Callable[[], bool]
) -> int:
    """Make ephemeral shares for `recipients` ahead of use, until `stop()` or until `limit`
    are ready for each; how many were made. For a worker process with a core to spare while
    the coordinator lists (the two X25519 multiplications are 48 us of a tiny object's
    header). Age's rule holds: each file's stanza still gets an ephemeral key of its own."""
    keys = [X25519Recipient.parse(r).public_bytes for r in recipients]
    made = 0
    while not stop():
        wanted = [k for k in keys if len(_READY.setdefault(k, deque())) < limit]
        if not wanted:
            break
        for key in wanted:
            _READY[key].append(_ephemeral(key))
            made += 1
    return made


def ready_ephemerals(recipient: str) -> int:
    """How many precomputed shares this process holds for `recipient`."""
    return len(_READY.get(X25519Recipient.parse(recipient).public_bytes, ()))


def _low_order(public: bytes) -> bool:
    """Whether `public` is a point of small order: X25519 with any clamped scalar (a
    multiple of the cofactor) gives the all-zero secret, which libsodium refuses."""
    try:
        crypto_scalarmult(bytes(32), public)
    except CryptoError:
        return True
    return False


def _is_plugin_recipient(s: str) -> bool:
    """A plugin or post-quantum recipient (``age1pq1...``, ``age1yubikey1...``): its bech32
    prefix runs past ``age``. An X25519 key may itself start ``age1pq``: its prefix is ``age``."""
    lower = s.lower()
    return lower.startswith("age1") and lower.rfind("1") > len(RECIPIENT_HRP)


class X25519Recipient:
    """An age X25519 public key; wraps file keys for its identity."""

    __slots__ = ("_key",)

    def __init__(self, public_bytes: bytes) -> None:
        if len(public_bytes) != 32:
            raise ValueError("an X25519 public key is 32 bytes")
        self._key = public_bytes

    @classmethod
    def parse(cls, s: str) -> X25519Recipient:
        """Parse ``age1...``; raises ValueError saying what is wrong with `s`."""
        s = s.strip()
        if s.startswith("ssh-") or _is_plugin_recipient(s):
            raise ValueError("only age X25519 recipients (age1...) are supported")
        try:
            hrp, data = bech32_decode(s)
        except Bech32Error as exc:
            raise ValueError(f"not a valid age recipient: {exc}") from None
        if hrp != RECIPIENT_HRP or s != s.lower():
            raise ValueError("an age recipient is lowercase and starts with 'age1'")
        if len(data) != 32:
            raise ValueError(f"an age recipient holds 32 bytes, this one {len(data)}")
        if _low_order(data):
            raise ValueError("it is a low-order X25519 point, which no secret key can open")
        return cls(data)

    @property
    def public_bytes(self) -> bytes:
        return self._key

    def wrap(self, file_key: bytes) -> tuple[bytes, bytes]:
        """(ephemeral share, stanza body) wrapping `file_key` for this recipient.

        A fresh ephemeral key per call, as age requires: the stanza's ChaCha20-Poly1305 uses
        a fixed nonce, so its key must never repeat (one made ahead by
        `precompute_ephemerals` is taken from its pool, once). libsodium's X25519
        (fixed-base tables for the share) makes this call 45 us cheaper than OpenSSL's
        through `cryptography`, 15 % of a tiny object's worker CPU. Raises ValueError for a
        low-order recipient (an all-zero shared secret, which libsodium refuses)."""
        try:
            share, shared = _READY[self._key].popleft()  # made ahead, if any: used once
        except (KeyError, IndexError):
            try:
                share, shared = _ephemeral(self._key)
            except CryptoError:
                raise ValueError(
                    "the recipient is a low-order X25519 point: no shared key"
                ) from None
        wrap_key = hkdf_sha256(shared, share + self._key, X25519_INFO)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return share, body

    def __str__(self) -> str:
        return bech32_encode(RECIPIENT_HRP, self._key)

    def __repr__(self) -> str:
        return f"X25519Recipient({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)


class X25519Identity:
    """An age X25519 secret key. `str`/`repr` show only its recipient, never the secret."""

    __slots__ = ("_private", "_public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self._public = private.public_key().public_bytes_raw()

    @classmethod
    def parse(cls, s: str) -> X25519Identity:
        """Parse ``AGE-SECRET-KEY-1...``; raises ValueError (the message never holds `s`)."""
        s = s.strip()
        if s.upper().startswith("AGE-SECRET-KEY-PQ-"):
            raise ValueError("post-quantum (hybrid) identities are not supported, only X25519")
        try:
            hrp, data = bech32_decode(s)
        except Bech32Error as exc:
            raise ValueError(f"not a valid age identity: {exc}") from None
        if hrp != IDENTITY_HRP or s != s.upper():
            raise ValueError("an age identity is uppercase and starts with 'AGE-SECRET-KEY-1'")
        if len(data) != 32:
            raise ValueError(f"an age identity holds 32 bytes, this one {len(data)}")
        return cls(X25519PrivateKey.from_private_bytes(data))

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(X25519PrivateKey.generate())

    def recipient(self) -> X25519Recipient:
        return X25519Recipient(self._public)

    def to_secret_string(self) -> str:
        """The ``AGE-SECRET-KEY-1...`` string: write it only to a 0600 file."""
        raw = self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return bech32_encode(IDENTITY_HRP, raw).upper()

    def unwrap(self, share: bytes, body: bytes) -> bytes | None:
        """The file key of an X25519 stanza, or None if the stanza is not for this identity.

        Raises AgeHeaderError if the share is a low-order point (all-zero shared secret)."""
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError:
            shared = bytes(32)
        if shared == bytes(32):
            raise AgeHeaderError("an X25519 stanza has a low-order share (invalid header)")
        wrap_key = hkdf_sha256(shared, share + self._public, X25519_INFO)
        try:
            file_key = ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
        except InvalidTag:
            return None
        return file_key

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient()})"

    __str__ = __repr__


def shown_key(value: str) -> str:
    """`value` as safe to print in an error: a secret key pasted by mistake is redacted."""
    if "SECRET-KEY" in value.upper():
        return "'AGE-SECRET-KEY-... (redacted: a secret key, not a recipient)'"
    return repr(value if len(value) < 80 else value[:77] + "...")


def parse_recipients(values: Sequence[str]) -> list[X25519Recipient]:
    """Parse age recipients; raises ConfigError naming the bad value and its 1-based index.

    A secret key given by mistake is never echoed (see `shown_key`)."""
    recipients = []
    for index, value in enumerate(values, start=1):
        try:
            recipients.append(X25519Recipient.parse(value))
        except ValueError as exc:
            raise ConfigError(
                f"recipient {index} of {len(values)} ({shown_key(value)}) is invalid: {exc}; "
                "give the public key printed by 'bascule keys generate' or 'age-keygen -y'"
            ) from None
    return recipients


def _check_private_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"identity file {path} is readable by group or others (mode {mode:04o}); "
            f"it holds a secret key: run 'chmod 600 {path}'"
        )


def load_identities(path: Path) -> list[X25519Identity]:
    """Read an age identity file: one ``AGE-SECRET-KEY-1...`` per line, '#' comments, blanks.

    Raises ConfigError if the file is missing, readable by group or others (mode & 0o077),
    holds a line that is not an X25519 identity (named by line number, never echoed), or
    holds no identity at all."""
    if not path.is_file():
        raise ConfigError(
            f"identity file {path} not found; create one with "
            f"'bascule keys generate --output {path}'"
        )
    _check_private_mode(path)
    identities = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(X25519Identity.parse(line))
        except ValueError as exc:
            raise ConfigError(f"identity file {path}, line {number}: {exc}") from None
    if not identities:
        raise ConfigError(f"identity file {path} holds no identity (AGE-SECRET-KEY-1... line)")
    return identities


def write_identity_file(path: Path, identity: X25519Identity, created: str) -> None:
    """Create `path` with mode 0600 holding `identity`, in age-keygen's layout.

    Raises FileExistsError if `path` exists (an identity is never overwritten)."""
    content = (
        f"# created: {created}\n"
        f"# public key: {identity.recipient()}\n"
        f"{identity.to_secret_string()}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(path, 0o600)  # exactly 0600 whatever the umask

"""The age v1 format's size arithmetic: the one place that knows how big things are.

An age file is a header (intro line, one stanza per recipient, MAC line), a 16-byte payload
nonce, then STREAM chunks of 64 KiB plaintext, each followed by a 16-byte Poly1305 tag. Every
chunk but the last is `ENCRYPTED_CHUNK_SIZE` bytes, so chunk k starts at
``header_len + NONCE_SIZE + k * ENCRYPTED_CHUNK_SIZE``; the last chunk is non-empty unless the
whole file is empty (one empty final chunk). The planner, the part tasks, the re-reader and
the age reader all take their sizes from here.
"""

from __future__ import annotations

from bascule.age.errors import AgeHeaderError, AgePayloadError

CHUNK_SIZE = 64 * 1024  # plaintext bytes per STREAM chunk
CHUNK_OVERHEAD = 16  # Poly1305 tag
NONCE_SIZE = 16  # payload nonce after the header
ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + CHUNK_OVERHEAD  # 65,552

AGE_INTRO = len(b"age-encryption.org/v1\n")
X25519_STANZA = len(b"-> X25519 ") + 43 + 1 + 43 + 1  # share line + wrapped key line
MAC_LINE = len(b"--- ") + 43 + 1


def header_length(recipients: int) -> int:
    """Bytes of an age v1 header with `recipients` X25519 stanzas (fixed-length lines)."""
    return AGE_INTRO + recipients * X25519_STANZA + MAC_LINE


def chunk_count(plaintext_size: int) -> int:
    """Number of STREAM chunks (1 for an empty file: the empty final chunk)."""
    return max(1, -(-plaintext_size // CHUNK_SIZE))


def encrypted_length(plaintext_length: int) -> int:
    """Ciphertext bytes of `plaintext_length` bytes made of whole chunks (+ a short last)."""
    return plaintext_length + CHUNK_OVERHEAD * chunk_count(plaintext_length)


def ciphertext_size(plaintext_size: int, header_len: int) -> int:
    """Size of the whole age file."""
    return header_len + NONCE_SIZE + encrypted_length(plaintext_size)


def chunk_offset(index: int, header_len: int) -> int:
    """Offset in the age file where chunk `index` starts."""
    return header_len + NONCE_SIZE + index * ENCRYPTED_CHUNK_SIZE


def plaintext_size(ciphertext_size: int, header_len: int) -> int:
    """The plaintext size an age file of this size holds.

    Raises AgeHeaderError if the nonce is cut, AgePayloadError if no chunk layout gives this
    size (truncated mid-chunk, empty final chunk after a full one, no chunk at all)."""
    payload = ciphertext_size - header_len - NONCE_SIZE
    if payload < 0:
        raise AgeHeaderError("the age file ends inside the payload nonce (truncated)")
    full, rest = divmod(payload, ENCRYPTED_CHUNK_SIZE)
    if rest == 0 and full == 0:
        raise AgePayloadError("the age payload has no chunk at all (truncated)")
    if 0 < rest < CHUNK_OVERHEAD or (rest == CHUNK_OVERHEAD and full > 0):
        raise AgePayloadError(
            f"the age payload size {payload} is not a valid chunk layout (truncated or extended)"
        )
    return full * CHUNK_SIZE + max(0, rest - CHUNK_OVERHEAD)

"""The ways reading an age file fails, one `EncryptionError` subclass per class of failure.

They follow the outcome classes of the age test vectors (C2SP CCTV), so a caller or a test
can tell a malformed header from a wrong key or a tampered payload:

```
EncryptionError (bascule.errors)
├── AgeArmorError       the PEM armor is malformed
├── AgeHeaderError      the header is malformed, or the payload nonce is missing
├── AgeHeaderMacError   the header MAC does not verify (header altered)
├── AgeNoMatchError     no identity unwraps any recipient stanza (wrong key)
└── AgePayloadError     a payload chunk fails authentication, or the payload is cut
```
"""

from __future__ import annotations

from bascule.errors import EncryptionError


class AgeArmorError(EncryptionError):
    """The ASCII armor (-----BEGIN AGE ENCRYPTED FILE-----) is malformed."""


class AgeHeaderError(EncryptionError):
    """The header does not follow the age v1 grammar, or the payload nonce is missing."""


class AgeHeaderMacError(EncryptionError):
    """The header MAC does not match: the header was altered."""


class AgeNoMatchError(EncryptionError):
    """None of the identities given unwraps the file key."""


class AgePayloadError(EncryptionError):
    """A payload chunk failed authentication, or the payload is truncated or extended."""

"""The error tree every bascule layer raises, and the exit code each class maps to.

```
BasculeError
├── UsageError                      exit 2: bad command line, config or runbook
│   ├── ConfigError
│   └── RunbookError
├── ConnectorError                  exit 3: carries .connector and .key
│   ├── ObjectNotFound              permanent
│   ├── ContainerNotFound           permanent: bucket / container missing
│   ├── AccessDenied                permanent: wrong or insufficient credentials
│   ├── PreconditionFailed          permanent: If-Match on a stale etag
│   ├── UnsupportedOperation        permanent: capability the backend lacks
│   └── TransientStorageError       retryable: throttling, 5xx, resets
│       └── Throttled               retryable, may carry retry_after_s
├── EncryptionError                 exit 1: authentication or format failure reading age
├── VerificationError               exit 1: a mismatch; shows both sides' values
├── JournalError                    exit 2: corrupt, foreign or unwritable journal
├── PlanError                       exit 2
└── Interrupted                     exit 4: stopped cleanly, resumable
```
Messages say what happened, where, and what to do. Any other exception is a bug, never
mapped to one of these: the CLI says so in one line (exit 1), ``--debug`` shows the traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # verification mismatch or failed gate
    USAGE = 2  # usage or configuration error
    STORAGE = 3  # storage, credential or network error
    INTERRUPTED = 4  # interrupted, resumable


class BasculeError(Exception):
    """Root of every error bascule raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(BasculeError):
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A configuration problem; the message names the file, the key path and the fix."""


class RunbookError(UsageError):
    """A runbook problem; the message names the file, the line and the fix."""


class PlanError(BasculeError):
    exit_code = ExitCode.USAGE


class JournalError(BasculeError):
    exit_code = ExitCode.USAGE


class EncryptionError(BasculeError):
    """age format or authentication failure (tampered, truncated, wrong key)."""

    exit_code = ExitCode.FAILED


class VerificationError(BasculeError):
    exit_code = ExitCode.FAILED


class Interrupted(BasculeError):
    exit_code = ExitCode.INTERRUPTED


class ConnectorError(BasculeError):
    """A storage error at a connector's boundary.

    `connector` names the endpoint (e.g. ``s3://bucket`` or ``az://account/container``)
    and `key` the object concerned, when there is one.
    """

    exit_code = ExitCode.STORAGE
    retryable: bool = False

    def __init__(self, message: str, *, connector: str = "", key: str = "") -> None:
        super().__init__(message)
        self.connector = connector
        self.key = key


class ObjectNotFound(ConnectorError):
    pass


class ContainerNotFound(ConnectorError):
    pass


class AccessDenied(ConnectorError):
    pass


class PreconditionFailed(ConnectorError):
    """The object changed since it was planned (If-Match on a stale etag)."""


class UnsupportedOperation(ConnectorError):
    pass


class TransientStorageError(ConnectorError):
    retryable = True


class Throttled(TransientStorageError):
    """The service asked us to slow down; `retry_after_s` is its hint, if any."""

    def __init__(
        self,
        message: str,
        *,
        connector: str = "",
        key: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, connector=connector, key=key)
        self.retry_after_s = retry_after_s

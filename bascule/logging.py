"""Structured logging: JSON lines to a file per run, readable lines on stderr, secrets redacted.

`configure_logging` sets structlog up once per process (calling it again replaces the previous
set-up and closes its file). Every event, from bascule (structlog) or from a library (stdlib
`logging`: the Azure SDK, botocore), goes through `redact` before it is rendered, on both the
file and the console. `redact` replaces:

- values of keys named like a secret (``secret``, ``password``, ``token``, ``credential``,
  ``access_key``, ``account_key``, ``connection_string``, ``sas``, ``signature``, ...);
- inside any string, key or value, nested in dicts, lists and tuples: Azure connection strings
  (whole), ``AccountKey=``, SAS ``sig=`` and ``SharedAccessSignature=``, AWS ``Signature=`` and
  ``Credential=``, ``Authorization`` headers, passwords in URLs, ``AGE-SECRET-KEY-1...``, AWS
  access key ids (``AKIA...``) and 40-character secret access keys, and every value given to
  `register_secret` (e.g. the environment values a configuration reads).

Objects other than str/int/float/bool/None (exceptions, paths, bytes, ...) are turned into text
before redaction, so nothing reaches a renderer unredacted through ``repr``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "***"
# Shorter values would redact ordinary words; such values are ignored by register_secret.
MIN_SECRET_LENGTH = 4
# Libraries that log every HTTP request at INFO; their warnings still reach the file.
_CHATTY_LOGGERS = ("azure", "botocore", "boto3", "urllib3", "s3transfer", "distributed")

_SECRET_KEY_NAME = re.compile(
    r"(^|_)(secret|secrets|password|passwd|pwd|passphrase|token|credential|credentials|auth"
    r"|authorization|sas|sig|signature|cookie)(_|$)"
    r"|access_?key|account_?key|private_?key|secret_?key|api_?key"
    r"|connection_?string|conn_?str"
)
# Opaque handles that are not secrets but whose names look like one.
_NOT_SECRET_KEY_NAMES = frozenset({"resume_token"})

_CONN_STRING_PART = (
    r"(?:DefaultEndpointsProtocol|AccountName|AccountKey|BlobEndpoint|QueueEndpoint"
    r"|TableEndpoint|FileEndpoint|EndpointSuffix|SharedAccessSignature|UseDevelopmentStorage)"
)
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # An Azure connection string, whole: from its first recognised part to the next blank.
    (
        re.compile(rf"{_CONN_STRING_PART}=[^\s'\"]*(?:;{_CONN_STRING_PART}=[^\s'\"]*)*", re.I),
        "<redacted connection string>",
    ),
    (re.compile(r"(AccountKey=)[^;\s'\"]+", re.I), rf"\g<1>{REDACTED}"),
    (re.compile(r"(SharedAccessSignature=)[^;\s'\"]+", re.I), rf"\g<1>{REDACTED}"),
    (re.compile(r"([?&;]sig=)[^&\s'\"]+", re.I), rf"\g<1>{REDACTED}"),
    (re.compile(r"(Signature=)[0-9a-f]{16,}", re.I), rf"\g<1>{REDACTED}"),
    (re.compile(r"(Credential=)[^,\s'\"]+", re.I), rf"\g<1>{REDACTED}"),
    (re.compile(r"(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+", re.I), rf"\g<1>{REDACTED}"),
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+(@)"), rf"\g<1>{REDACTED}\g<2>"),
    (re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+", re.I), f"AGE-SECRET-KEY-{REDACTED}"),
    (re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"), REDACTED),
)
# 40 characters of the base64 alphabet, standing alone: the shape of an AWS secret access key.
_AWS_SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

_lock = threading.Lock()
_secrets: set[str] = set()
_state: dict[str, Any] = {"handlers": [], "log_file": None}


def register_secret(value: str | None) -> None:
    """Redact every later occurrence of `value` in logs (values shorter than 4 are ignored)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def _looks_like_aws_secret(match: re.Match[str]) -> str:
    text = match.group(0)
    # Hex digests (SHA-1, git ids) share the length; a real key mixes cases and digits.
    mixed = (
        any(c.islower() for c in text)
        and any(c.isupper() for c in text)
        and any(c.isdigit() or c in "/+" for c in text)
    )
    return REDACTED if mixed else text


def redact_text(text: str) -> str:
    """`text` with every secret-shaped substring replaced (see the module docstring)."""
    with _lock:
        registered = sorted(_secrets, key=len, reverse=True)
    for secret in registered:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return _AWS_SECRET_SHAPE.sub(_looks_like_aws_secret, text)


def _is_secret_key(name: str) -> bool:
    normal = name.lower().replace("-", "_")
    return normal not in _NOT_SECRET_KEY_NAMES and bool(_SECRET_KEY_NAME.search(normal))


def redact_value(value: object) -> object:
    """A copy of `value` safe to log: nested containers walked, other objects made text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            redact_text(str(k)): REDACTED if _is_secret_key(str(k)) else redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    if isinstance(value, os.PathLike):
        return redact_text(str(value))
    return redact_text(repr(value))


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the event with secrets replaced, keys and values, nested."""
    cleaned = redact_value(dict(event_dict))
    assert isinstance(cleaned, dict)
    return cleaned


def _drop_stdlib_extras(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # ProcessorFormatter hands foreign records over as `_record`/`_from_structlog`; they must
    # not be rendered (the record repr carries the unredacted message).
    for key in ("_record", "_from_structlog"):
        event_dict.pop(key, None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        # Exceptions become text here, so that redaction sees the traceback and message.
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
    ]


def _formatter(renderer: Processor) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[_drop_stdlib_extras, redact, renderer],
    )


def _close_handlers(root: logging.Logger) -> None:
    handlers: Iterable[logging.Handler] = _state["handlers"]
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
    _state["handlers"] = []
    _state["log_file"] = None


def _new_log_file(log_dir: Path) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return log_dir / f"bascule-{stamp}-{os.getpid()}.jsonl"


def configure_logging(
    log_dir: Path = Path(".bascule/logs"),
    *,
    console_level: str = "info",
    json: bool = True,
    file_level: str = "debug",
) -> None:
    """Send every log event to stderr (readable, at `console_level` and above) and, with
    `json`, to a new JSON-lines file under `log_dir` (at `file_level` and above; name:
    ``bascule-<UTC timestamp>-<pid>.jsonl``; see `current_log_file`). Both sinks redact
    secrets. Events below both levels are dropped before any processing (per-object debug
    lines cost nothing unless asked for).

    Raises OSError if `log_dir` cannot be created or written."""
    root = logging.getLogger()
    with _lock:
        _close_handlers(root)
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(console_level.upper())
        console.setFormatter(_formatter(structlog.dev.ConsoleRenderer(colors=False)))
        handlers: list[logging.Handler] = [console]
        if json:
            path = _new_log_file(log_dir)
            file_handler = logging.FileHandler(path, encoding="utf-8", delay=False)
            file_handler.setLevel(file_level.upper())
            file_handler.setFormatter(_formatter(structlog.processors.JSONRenderer()))
            handlers.append(file_handler)
            _state["log_file"] = path
        for handler in handlers:
            root.addHandler(handler)
        _state["handlers"] = handlers
        root.setLevel(min(h.level for h in handlers))
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def is_configured() -> bool:
    return bool(_state["handlers"])


def current_log_file() -> Path | None:
    """The JSON-lines file of this run, or None (not configured, or `json=False`)."""
    path: Path | None = _state["log_file"]
    return path


def shutdown_logging() -> None:
    """Flush and close the handlers `configure_logging` installed (tests; process exit)."""
    with _lock:
        _close_handlers(logging.getLogger())


def get_logger(name: str | None = None, **context: object) -> Any:
    """A structlog logger bound to `context` (a BoundLogger once configured)."""
    return structlog.get_logger(name, **context)


Redactor = Callable[[WrappedLogger, str, MutableMapping[str, Any]], Mapping[str, Any]]
_: Redactor = redact

